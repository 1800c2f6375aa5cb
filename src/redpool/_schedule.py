"""Schedules: a producer's plan() runs on one node per interval, pool-wide (it rides a
distributed ticker), and its plan is applied: starts dispatched concurrently (a key already
running is skipped without holding up the rest), stops, and stop_all. Each node's schedule
runs as a supervised loop, so an unreachable Redis costs a tick, not the schedule."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from ._dispatch import Dispatcher
from ._keys import Keys
from ._redis import awaitable
from ._threads import call_maybe_async
from ._ticker import Ticker
from ._types import JobParam, JobPlan, JobProducer
from .errors import JobExistsError, JobNotFoundError, PoolError, ScheduleStop


def ticker_name(producer_name: str) -> str:
    return f"schedule:{producer_name}"


class Schedule:
    def __init__(
        self,
        producer: JobProducer,
        ticker: Ticker,
        dispatcher: Dispatcher,
        client: aioredis.Redis,
        keys: Keys,
        log: FilteringBoundLogger,
    ) -> None:
        self._producer = producer
        self._ticker = ticker
        self._dispatcher = dispatcher
        self._client = client
        self._jobs = keys.schedule_jobs(producer.name)
        self._log = log.bind(schedule=producer.name)
        self._ending = False

    async def step(self) -> bool:
        """Wait for the next tick this node wins and apply its plan; True once the schedule is
        over here. Run under supervise(): an error (Redis unreachable) costs one tick."""
        if not self._ending:
            try:
                await anext(self._ticker)
            except StopAsyncIteration:
                return True  # closed here, or stopped pool-wide
            self._ending = await self._plan_and_apply()
            if not self._ending:
                return False
        # ScheduleStop: end it pool-wide (a failure here is retried by the supervisor).
        await self._ticker.stop()
        await self._client.unlink(self._jobs)
        return True

    async def _plan_and_apply(self) -> bool:
        """True when plan() raised ScheduleStop."""
        try:
            plan = await call_maybe_async(self._producer.plan)
        except ScheduleStop:
            self._log.info("plan() raised ScheduleStop; ending the schedule pool-wide")
            return True
        except Exception as exc:
            self._log.warning("plan() raised; trying again next interval", error=repr(exc))
            return False
        if not isinstance(plan, JobPlan):
            self._log.warning("plan() did not return a JobPlan", got=type(plan).__name__)
            return False
        await self.apply(plan)
        return False

    async def apply(self, plan: JobPlan) -> None:
        await asyncio.gather(*(self._start(param) for param in plan.start))
        if plan.stop_all:
            keep = {param.key for param in plan.start}
            mine = await awaitable(self._client.smembers(self._jobs))
            stop = [k.decode() for k in mine if k.decode() not in keep]
        else:
            stop = list(plan.stop)
        await asyncio.gather(*(self._stop(key) for key in stop))

    async def _start(self, param: JobParam) -> None:
        try:
            await self._dispatcher.dispatch(param.key, param.payload)
        except JobExistsError:
            return  # already running: nothing to do, and nothing waited for
        except PoolError as exc:
            self._log.warning("planned start failed", key=param.key, error=str(exc))
            return
        await awaitable(self._client.sadd(self._jobs, param.key))

    async def _stop(self, key: str) -> None:
        try:
            await self._dispatcher.stop(key)
        except JobNotFoundError:
            pass
        except PoolError as exc:
            self._log.warning("planned stop failed", key=key, error=str(exc))
            return
        await awaitable(self._client.srem(self._jobs, key))
