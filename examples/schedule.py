"""A schedule: plan() runs once per interval on one node of the pool; its plan is applied.

REDIS_URL=redis://localhost:6379/0 python examples/schedule.py
"""

import asyncio
import os

import redpool


class Feeds:
    """Keep one poller job per feed running; the feed list changes over time."""

    name = "feed-pollers"

    def __init__(self) -> None:
        self.rounds = [["news", "weather"], ["news", "sports"], ["sports"]]

    def plan(self) -> redpool.JobPlan:
        if not self.rounds:
            raise redpool.ScheduleStop  # ends the schedule on every node
        feeds = self.rounds.pop(0)
        print(f"plan: run {feeds}")
        return redpool.JobPlan(start=[redpool.JobParam(f) for f in feeds], stop_all=True)


class Poller:
    async def start(self, job: redpool.Job) -> None:
        print(f"  start polling {job.key}")

    async def stop(self, key: str) -> None:
        print(f"  stop polling {key}")


async def main(url: str) -> None:
    node = await redpool.add_node("schedule-example", url)
    await node.add_worker(Poller())
    await node.schedule(Feeds(), interval=0.2)
    await asyncio.sleep(1.0)  # let a few intervals pass
    print(f"running now: {await node.job_keys()}")
    await node.shutdown()


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("REDIS_URL", "redis://localhost:6379/0")))
