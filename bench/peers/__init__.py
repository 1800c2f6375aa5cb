"""Worker/task modules of the peer job queues, each with one trivial job that records when its
body ran (see record.py). Their workers import them from the repository root."""
