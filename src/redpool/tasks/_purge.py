"""Deleting an ended pool's tasks keys, after the core's purge deleted its own."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from .._keys import Keys
from .._redis import retry_transient
from ._keys import TaskKeys
from ._scripts import TaskScripts

PURGE_LIMIT = 500
PURGE_STEP_TIMEOUT = 10.0


async def purge_tasks(client: aioredis.Redis, keys: Keys, what: str) -> None:
    scripts = TaskScripts(client, TaskKeys(keys))
    while (
        await retry_transient(
            lambda: scripts.purge(PURGE_LIMIT), time.monotonic() + PURGE_STEP_TIMEOUT, what
        )
        == "more"
    ):
        pass
