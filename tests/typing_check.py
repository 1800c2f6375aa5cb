"""Type-checked by mypy --strict (see pyproject.toml): the documented usage must type-check.
It is also imported by tests/test_typing.py so that it stays importable."""

from __future__ import annotations

import redpool


class Handler:
    async def start(self, job: redpool.Job) -> None:
        print(job.key, job.payload, job.created_at, job.worker_id, job.node_id, job.is_owned())

    def stop(self, key: str) -> None:
        print("stopped", key)

    async def handle_notification(self, key: str, payload: bytes) -> None:
        print(key, payload)


async def documented_usage(url: str) -> None:
    node: redpool.Node = await redpool.add_node("pool", url, worker_ttl=10.0)
    async with node:
        worker: redpool.Worker = await node.add_worker(Handler())
        await node.dispatch_job("key", b"payload")
        keys: list[str] = await node.job_keys()
        payload: bytes | None = await node.job_payload(keys[0])
        infos: list[redpool.WorkerInfo] = await node.pool_workers()
        jobs: list[redpool.Job] = worker.jobs()
        print(payload, infos, jobs, worker.is_stopped(), node.is_closed(), node.is_shutdown())
        try:
            await node.stop_job("key")
        except redpool.JobNotFoundError as exc:
            print(exc.key)
        except redpool.PoolError:
            raise
        await node.remove_worker(worker)
    handler: redpool.JobHandler = Handler()
    print(handler)
