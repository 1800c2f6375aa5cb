"""Notifications: a client-only node sends messages to whichever worker runs a key.

REDIS_URL=redis://localhost:6379/0 python examples/notify.py
"""

import asyncio
import os

import redpool


class Chat:
    def __init__(self) -> None:
        self.received = asyncio.Queue[tuple[str, bytes]]()

    async def start(self, job: redpool.Job) -> None:
        print(f"session {job.key} open")

    async def stop(self, key: str) -> None:
        print(f"session {key} closed")

    async def handle_notification(self, key: str, payload: bytes) -> None:
        await self.received.put((key, payload))


async def main(url: str) -> None:
    worker_node = await redpool.add_node("notify-example", url)
    chat = Chat()
    await worker_node.add_worker(chat)
    web = await redpool.add_node("notify-example", url, client_only=True)
    await web.dispatch_job("session-42")
    for text in ("hello", "how are you?", "bye"):
        await web.notify_worker("session-42", text.encode())
    for _ in range(3):
        key, payload = await chat.received.get()
        print(f"{key} got {payload.decode()!r}")
    await web.close()
    await worker_node.shutdown()


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("REDIS_URL", "redis://localhost:6379/0")))
