"""A distributed ticker: two nodes share the ticker "heartbeat"; each tick goes to one of them.

REDIS_URL=redis://localhost:6379/0 python examples/ticker.py
"""

import asyncio
import os

import redpool


async def consume(node: redpool.Node, name: str, ticks: list[str]) -> None:
    ticker = await node.new_ticker("heartbeat", 0.1)
    async for tick in ticker:
        ticks.append(f"{tick:%H:%M:%S.%f} -> {name}")
        if len(ticks) >= 6:
            ticker.stop()  # off for every node


async def main(url: str) -> None:
    a = await redpool.add_node("ticker-example", url)
    b = await redpool.add_node("ticker-example", url)
    ticks: list[str] = []
    await asyncio.gather(consume(a, "node a", ticks), consume(b, "node b", ticks))
    print("\n".join(ticks[:6]))
    await b.close()
    await a.shutdown()


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("REDIS_URL", "redis://localhost:6379/0")))
