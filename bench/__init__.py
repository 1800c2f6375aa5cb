"""redpool benchmark harness: ``python -m bench`` (``make bench``); see docs/benchmarks.md."""
