"""Type-checked by mypy --strict (see pyproject.toml): the documented usage must type-check.
It is also imported by tests/test_typing.py so that it stays importable."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import redpool


class Handler:
    async def start(self, job: redpool.Job) -> None:
        if job.attempt > 3:
            raise redpool.Requeue(delay=1.0, max_attempts=5)
        print(job.key, job.payload, job.created_at, job.worker_id, job.node_id, job.is_owned())

    def stop(self, key: str) -> None:
        print("stopped", key)

    async def handle_notification(self, key: str, payload: bytes) -> None:
        print(key, payload)


async def redispatch(jobs: Sequence[redpool.Job]) -> None:
    print([job.key for job in jobs])


async def documented_usage(url: str) -> None:
    print(redpool.__version__)
    node: redpool.Node = await redpool.add_node(
        "pool",
        url,
        worker_ttl=10.0,
        start_timeout=5.0,
        sync_threads=8,
        connect_timeout=0,
        max_connections=20,
        logger=logging.getLogger("app"),
        on_state_lost=redispatch,
    )
    async with node:
        worker: redpool.Worker = await node.add_worker(Handler())
        await node.dispatch_job("key", b"payload")
        keys: list[str] = await node.job_keys()
        payload: bytes | None = await node.job_payload(keys[0])
        infos: list[redpool.WorkerInfo] = await node.pool_workers()
        for w in infos:
            print(w.id, w.node_id, w.host, w.pid, w.job_count, w.created_at)
        info: redpool.JobInfo | None = await node.job_info("key")
        if info is not None:
            state: redpool.JobState = info.state
            print(state, info.worker_id, info.node_id, info.host, info.pid, info.epoch)
            print(info.attempt, info.created_at, info.started_at, info.payload_size)
        mine: list[redpool.JobInfo] = await node.pool_jobs(worker=worker.id)
        everything: list[redpool.JobInfo] = await node.pool_jobs()
        print(mine, everything)
        jobs: list[redpool.Job] = worker.jobs()
        print(payload, infos, jobs, worker.is_stopped(), node.is_closed(), node.is_shutdown())
        try:
            await node.stop_job("key")
        except redpool.JobNotFoundError as exc:
            print(exc.key)
        except redpool.DispatchTimeoutError as exc:
            print(exc.reason)
        except (redpool.RedisConfigError, redpool.RedisFullError, redpool.EventLoopError):
            raise
        except redpool.PoolError:
            raise
        await node.remove_worker(worker)
    await redpool.purge_pool(url, "pool")
    handler: redpool.JobHandler = Handler()
    print(handler)


tasks = redpool.Tasks(default_queue="default")


@tasks.task(name="typed.double", timeout=5, retry=redpool.Retry(max_attempts=2))
async def double(run: redpool.RunContext, params: int) -> int:
    await run.progress(1, 2, details="half")
    await run.checkpoint()
    print(run.key, run.attempt, run.epoch, run.labels, run.tenant, run.is_owned())
    return params * 2


@tasks.task(name="typed.resumable", suspendable=True, on_suspend=lambda run: None)
async def resumable(run: redpool.RunContext, rows: int) -> int:
    done: int = (run.checkpoint_state or {}).get("done", 0)
    last: redpool.Progress | None = run.last_progress
    print(run.resumed, last)
    while done < rows:
        done += 1
        await run.checkpoint({"done": done})
    return done


async def documented_tasks_usage(url: str) -> None:
    node = await redpool.add_node("pool", url)
    await node.add_task_worker(tasks, concurrency=4, queues={"default": None, "compute": 1})
    await node.configure_queue("compute", max_running=2, max_queued=1000)
    handle: redpool.JobHandle[int] = await node.submit(double, 21, key="d:1")
    value: int = await handle.result(timeout=10)
    status: redpool.Status = await handle.status()
    info: redpool.TaskInfo = await handle.wait(timeout=10)
    runs: list[redpool.RunInfo] = await handle.runs(limit=5)
    direct: int = await node.run(double, 2, timeout=10)
    other = node.job("d:1")
    final: redpool.Status = await other.cancel(wait=True, timeout=5)
    print(value, status, info.status, info.error, runs, direct, final)
    export = await node.submit(resumable, 10)
    try:
        paused: redpool.Status = await export.pause(ack_timeout=1.0)
        resumed: redpool.Status = await export.resume()
        suspended: redpool.Status = await export.suspend(wait=True, timeout=5)
        print(paused, resumed, suspended)
    except redpool.PauseTimeoutError as exc:
        print(exc.timeout)
    except redpool.NotSuspendableError as exc:
        print(exc.status)
    except redpool.InvalidTransitionError as exc:
        print(exc.status, exc.action)
    try:
        await node.submit("typed.double", 1, key="d:1", if_active="reject")
    except redpool.JobExistsError as exc:
        print(exc.handle)
    except redpool.JobUnsuccessfulError as exc:
        print(exc.info.status)


async def documented_recurring_usage(node: redpool.Node) -> None:
    schedule: redpool.ScheduleHandle = await node.schedule_job(
        "cleanup", double, 1, every=timedelta(minutes=5), max_runs=3, overlap="buffer_one"
    )
    await node.schedule_job("nightly", "typed.double", 2, cron="30 2 * * *", tz="Europe/Berlin")
    await schedule.wake(within=1.0)
    await schedule.suspend()
    await schedule.resume()
    metrics: redpool.ScheduleMetrics = await schedule.metrics()
    info: redpool.ScheduleInfo = await schedule.info()
    listed: list[redpool.ScheduleInfo] = await node.schedules()
    status: redpool.Status = await node.schedule_handle("cleanup").cancel()
    print(metrics.ok, metrics.next_run_at, info.every, listed, status, redpool.Status.ENDED)
    print(redpool.NextRunIn(5), redpool.NextRunIn(timedelta(seconds=1)).delay)
