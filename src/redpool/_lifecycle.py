"""The life of a pool: its incarnation id, the end of it (shutdown, purge) and its loss.

Every life of a pool has an incarnation id in ``meta``, created by the first heartbeat of the
first node and remembered by every node; every heartbeat compares it (heartbeat.lua). A node
whose incarnation was ended by a shutdown or a purge (the ``ended`` tombstone holds it) closes
itself instead of rejoining: a shutdown is final, also for a node that was paused or cut off
through it. A node that finds its incarnation missing or replaced without a tombstone learns
that Redis lost the pool's state: it reports and stops its jobs and rejoins the current life.

Ending a pool deletes its keys in bounded steps (purge.lua) found from its records, never by a
scan of the keyspace. A shutdown records its deadline in server time, so when its initiator
dies, the next ``add_node`` finishes it once the deadline has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from ._keys import Keys
from ._redis import address, connect, retry_transient, translate
from ._scripts import PurgeStep, Scripts
from ._threads import call_maybe_async
from ._types import Job
from .errors import PoolError, PoolShuttingDownError

if TYPE_CHECKING:
    from ._lease import FencedJob

# A tombstone outlives any pause or partition a node could come back from, yet expires.
TOMBSTONE_MS = 7 * 24 * 3600 * 1000
PURGE_LIMIT = 500  # entries of each structure deleted per purge.lua call
PURGE_STEP_TIMEOUT = 10.0  # seconds a purge step is retried through an outage

StateLostHook = Callable[[Sequence[Job]], Awaitable[None] | None]
"""``on_state_lost(jobs)``: the jobs this node ran when Redis lost the pool's state."""


class LifeChanged(PoolError):
    """The node's incarnation is not the pool's (a script answered 'changed'): its next
    heartbeat adopts the new one or closes the node."""


class PoolLife:
    """The incarnation of the pool this node belongs to ('' until its first heartbeat)."""

    def __init__(self) -> None:
        self.id = ""

    def adopt(self, incarnation: str) -> None:
        self.id = incarnation


async def purge(scripts: Scripts, overdue_only: bool, what: str) -> PurgeStep:
    """End the pool's current incarnation and delete its keys, a bounded step at a time.
    With ``overdue_only`` only a shutdown whose deadline has passed is finished; the step
    returned then says 'none' (no shutdown) or 'pending' (one still under way)."""
    step = PurgeStep("more", "", 0, 0)  # '' for the first call: whichever life is current
    while step.status == "more":
        step = await retry_transient(
            partial(scripts.purge, step.incarnation, overdue_only, PURGE_LIMIT, TOMBSTONE_MS),
            time.monotonic() + PURGE_STEP_TIMEOUT,
            what,
        )
    if step.status == "done":
        # Imported here: the tasks layer is built on the pool core (and imports it).
        from .tasks._purge import purge_tasks

        await purge_tasks(scripts.client, scripts.keys, what)
    return step


class LostJobs(Protocol):
    """What handling a loss of state needs from the node's local workers (``_host.Host``)."""

    def jobs(self) -> list[Job]: ...

    def fence(self) -> list[FencedJob]: ...

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None: ...


def state_lost(
    host: LostJobs,
    log: FilteringBoundLogger,
    hook: StateLostHook | None,
    incarnation: str,
    fenced: Sequence[Job],
) -> None:
    """Redis lost the pool's state (the heartbeat adopted ``incarnation``): nothing here runs
    under a record any more. Every job here (and each one fenced meanwhile) is stopped, then
    handed to ``hook`` in the background; the workers rejoin through the beat's missing list.
    Never awaits user code: the heartbeat calls it."""
    lost = {job.key: job for job in [*fenced, *host.jobs()]}
    log.error(
        "pool state lost in Redis; stopping this node's jobs and rejoining",
        incarnation=incarnation,
        jobs=len(lost),
    )
    stops = [f.stopped for f in host.fence()]
    host.spawn(_report_lost(list(lost.values()), stops, hook), "reporting lost jobs")


async def _report_lost(
    jobs: list[Job], stops: list[asyncio.Future[bool]], hook: StateLostHook | None
) -> None:
    await asyncio.gather(*stops)
    if hook is not None:
        await call_maybe_async(hook, jobs)


async def wait_for_nodes(client: aioredis.Redis, keys: Keys, timeout: float) -> None:
    """A shutdown waits (at most ``timeout`` s, what is left of its deadline) until no lease
    is live: every node stopped its jobs and left. Dead nodes are not waited for: their jobs
    were theirs alone, and their keys are deleted with the pool."""

    async def live_leases() -> int:
        seconds, micros = await client.time()
        now_ms = seconds * 1000 + micros // 1000
        return int(await client.zcount(keys.leases, now_ms, "+inf"))

    deadline = time.monotonic() + max(0.0, timeout)
    delay = 0.01
    while time.monotonic() < deadline:
        if not await retry_transient(live_leases, deadline, "waiting for the nodes"):
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


def shutting_down(pool: str, step: PurgeStep) -> PoolShuttingDownError:
    """The error for joining a pool whose shutdown is under way, saying how to get past it."""
    left = max(0.0, (step.deadline_ms - step.now_ms) / 1000)
    return PoolShuttingDownError(
        f"pool {pool!r} is shutting down; its nodes are stopping their jobs. add_node() works "
        f"again once that finished, and at the latest in {left:.1f}s (worker_shutdown_ttl "
        f"after it began), when it finishes the shutdown itself. If no node of the pool is "
        f"left, redpool.purge_pool(redis, {pool!r}) clears it now."
    )


async def purge_pool(redis: aioredis.Redis | str, pool_name: str) -> None:
    """Clear a dead pool at once: end its incarnation and delete every key of it.

    For a pool whose ``shutdown()`` was interrupted, or whose nodes all died. It does not wait
    for anyone: a node still running in the pool stops its jobs and closes itself (with
    :class:`PoolShuttingDownError`) at its next heartbeat, and never rejoins. Raises
    :class:`RedisUnavailableError` if Redis cannot be reached."""
    keys = Keys(pool_name)
    client, owns = connect(redis)
    try:
        await purge(Scripts(client, keys), False, f"purging pool {pool_name!r}")
    except Exception as exc:  # the error boundary, as for Node's methods
        mapped = translate(exc, address(client))
        if mapped is exc:
            raise
        raise mapped from exc
    finally:
        if owns:
            await client.aclose()
