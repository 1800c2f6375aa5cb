"""Connecting to Redis and the error boundary: every failure reaches the user as a PoolError
that names the server and the reason; what no retry can fix is raised at once."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis
import redis.exceptions
import structlog

import redpool
from redpool._keys import Keys
from redpool._options import MIB
from redpool._redis import MIN_VERSION, _version
from tests.helpers import Recorder, eventually
from tests.redis_server import RedisServer, free_port

FAST = {"worker_ttl": 1.0, "ack_grace_period": 1.0, "job_sink_block": 1.0}


async def test_queries_retry_through_an_outage_then_raise_redis_unavailable(fresh_redis):
    server = fresh_redis(True)
    node = await redpool.add_node("q", server.url, **FAST)
    server.stop()
    query = asyncio.ensure_future(node.job_keys())
    await asyncio.to_thread(server.start)  # the query began while Redis was down
    assert await query == []
    server.stop()
    for call in (node.job_keys(), node.pool_workers(), node.job_payload("k")):
        with pytest.raises(redpool.RedisUnavailableError, match=f"127.0.0.1:{server.port}"):
            await call
    server.start()
    await node.close()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6390/0", "redis://127.0.0.1:notaport/0", "rediz://:s3cret@h:1/0"],
)
async def test_a_bad_url_is_an_invalid_argument_that_hides_the_password(url):
    with pytest.raises(redpool.InvalidArgumentError, match="Redis URL") as err:
        await redpool.add_node("p", url)
    assert isinstance(err.value, ValueError)
    assert "s3cret" not in str(err.value)


async def test_a_db_the_server_lacks_is_a_configuration_error(redis_server):
    with pytest.raises(redpool.RedisConfigError, match="DB index is out of range") as err:
        await redpool.add_node("p", f"redis://127.0.0.1:{redis_server.port}/99")
    assert isinstance(err.value, redpool.InvalidArgumentError)


def test_a_node_used_from_another_event_loop_says_so(redis_url, pool_name):
    home, other = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        node = home.run_until_complete(redpool.add_node(pool_name, redis_url, **FAST))
        for call in (node.job_keys(), node.dispatch_job("k"), node.close()):
            with pytest.raises(redpool.EventLoopError, match="event loop"):
                other.run_until_complete(call)
        home.run_until_complete(node.close())
    finally:
        home.close()
        other.close()


async def test_a_refused_port_is_named_with_the_reason():
    port = free_port()
    with pytest.raises(redpool.RedisUnavailableError) as err:
        await redpool.add_node("p", f"redis://127.0.0.1:{port}/0", connect_timeout=0)
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and "refused" in message.lower(), message


async def test_an_unknown_host_is_named_with_the_reason():
    with pytest.raises(redpool.RedisUnavailableError) as err:
        await redpool.add_node("p", "redis://nonexistent.invalid:6390/0", connect_timeout=0)
    message = str(err.value)
    assert "nonexistent.invalid:6390" in message and "connecting" in message, message


async def test_add_node_waits_up_to_connect_timeout_for_redis_to_come_up(pool_name):
    server = RedisServer()
    try:
        joining = asyncio.ensure_future(
            redpool.add_node(pool_name, server.url, connect_timeout=30, **FAST)
        )
        await asyncio.to_thread(server.start)  # add_node began while nothing listened
        node = await joining
        assert await node.job_keys() == []
        await node.close()
    finally:
        server.cleanup()


@pytest.mark.parametrize("password", ["wrong", None])
async def test_a_wrong_or_missing_password_is_raised_at_once_not_retried(fresh_redis, password):
    server = fresh_redis(False, "--requirepass", "right")
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{server.port}/0"
    # A retried error would end as RedisUnavailableError after the whole connect_timeout.
    with pytest.raises(redpool.RedisConfigError, match="password") as err:
        await redpool.add_node("p", url, connect_timeout=60)
    assert isinstance(err.value, redpool.InvalidArgumentError)
    node = await redpool.add_node("p", f"redis://:right@127.0.0.1:{server.port}/0", **FAST)
    await node.close()


async def test_an_acl_user_without_evalsha_is_a_configuration_error(fresh_redis):
    server = fresh_redis()
    admin = aioredis.Redis(port=server.port)
    await admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all")
    await admin.execute_command("ACL", "SETUSER", "app", "-evalsha")
    await admin.aclose()
    with pytest.raises(redpool.RedisConfigError, match="evalsha") as err:
        await redpool.add_node("p", f"redis://app:pw@127.0.0.1:{server.port}/0", connect_timeout=60)
    assert "ACL" in str(err.value)


def test_versions_before_7_are_refused_by_the_join_check():
    # No Redis 6 binary on the test machines: the parser behind the check, on real strings.
    assert _version("6.2.14") < MIN_VERSION <= _version("7.0.15") < _version("7.10.0")


async def test_a_stdlib_logger_gets_one_line_per_event_with_its_fields(
    redis_url, pool_name, caplog
):
    logger = logging.getLogger("myapp.pool")
    with caplog.at_level(logging.INFO, logger="myapp.pool"):
        node = await redpool.add_node(pool_name, redis_url, logger=logger, **FAST)
        await node.close()
    joined = [r for r in caplog.records if "node joined" in r.getMessage()]
    assert joined and f"node='{node.id}'" in joined[0].getMessage()
    assert joined[0].levelno == logging.INFO


async def test_a_logger_of_another_kind_is_rejected_clearly(redis_url):
    with pytest.raises(redpool.InvalidArgumentError, match=r"logging\.Logger"):
        await redpool.add_node("p", redis_url, logger=print)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "warned"),
    [
        ("allkeys-lru", True),
        ("allkeys-random", True),
        ("volatile-lru", False),
        ("noeviction", False),
    ],
)
async def test_an_eviction_policy_that_can_delete_pool_keys_is_warned_about_at_join(
    fresh_redis, policy, warned
):
    server = fresh_redis(False, "--maxmemory-policy", policy)
    with structlog.testing.capture_logs() as logs:
        node = await redpool.add_node("p", server.url, **FAST)
        await node.close()
    warnings = [e for e in logs if "evict" in e["event"] and e["log_level"] == "warning"]
    assert bool(warnings) == warned, logs
    if warned:
        assert warnings[0]["maxmemory_policy"] == policy


async def test_the_policy_is_read_from_info_when_config_is_denied(fresh_redis):
    server = fresh_redis(False, "--maxmemory-policy", "allkeys-lru")
    admin = aioredis.Redis(port=server.port)
    await admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all")
    await admin.execute_command("ACL", "SETUSER", "app", "-config")
    await admin.aclose()
    with structlog.testing.capture_logs() as logs:
        node = await redpool.add_node("p", f"redis://app:pw@127.0.0.1:{server.port}/0", **FAST)
        await node.close()
    assert any("evict" in e["event"] for e in logs), logs


async def test_a_full_redis_refuses_new_jobs_clearly_and_running_ones_keep_running(fresh_redis):
    server = fresh_redis(False, "--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    node = await redpool.add_node("oom", server.url, **FAST)
    handler = Recorder()
    await node.add_worker(handler)
    await node.dispatch_job("running")
    filler = aioredis.Redis(port=server.port)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        for i in range(100_000):
            await filler.set(f"filler:{i}", b"x" * 10_000)
    # Well past maxmemory, so that freed buffers do not bring it back under.
    await filler.eval("#!lua flags=allow-oom\nredis.call('SET', 'ballast', ARGV[1])", 0, b"x" * MIB)
    seconds, micros = await filler.time()
    full_at_ms = seconds * 1000 + micros // 1000
    with pytest.raises(redpool.RedisFullError, match="out of memory"):
        await node.dispatch_job("new")
    # The lease is renewed for two more TTLs while Redis stays full: no fencing.
    leases = Keys("oom").leases

    async def renewed() -> bool:
        score = await filler.zscore(leases, node.id)
        return score is not None and score > full_at_ms + 2 * 1000 + 1000

    await eventually(renewed, timeout=10, what="renewals under OOM")
    assert list(handler.running) == ["running"] and handler.stopped == []
    await node.stop_job("running")  # stopping frees memory: allowed too
    assert handler.stopped == ["running"]
    await filler.flushall()
    await filler.aclose()
    await node.close()


async def test_thousands_of_concurrent_calls_stay_within_max_connections(fresh_redis):
    server = fresh_redis()
    worker_node = await redpool.add_node("cap", server.url, **FAST)
    handler = Recorder()
    await worker_node.add_worker(handler)
    keys = ["k0", "k1", "k2", "k3"]
    for key in keys:
        await worker_node.dispatch_job(key)
    url = f"redis://127.0.0.1:{server.port}/0?client_name=notifier"
    sender = await redpool.add_node("cap", url, client_only=True, max_connections=20, **FAST)
    admin = aioredis.Redis(port=server.port)
    most = 0
    # 500 per job: fewer than may wait for one job (1,000), however slowly they are taken.
    sending = asyncio.ensure_future(
        asyncio.gather(*(sender.notify_worker(keys[i % 4], b"%d" % i) for i in range(2000)))
    )
    while not sending.done():
        clients = await admin.client_list()
        most = max(most, sum(1 for c in clients if c.get("name") == "notifier"))
        await asyncio.sleep(0.001)
    await sending
    await eventually(lambda: len(handler.notifications) == 2000, what="all notifications")
    assert 0 < most <= 20 + 1  # the bounded pool, and the inbox reader's own connection
    await admin.aclose()
    await sender.close()
    await worker_node.close()


async def test_a_socket_timeout_shorter_than_the_blocking_read_does_not_break_the_reader(
    fresh_redis,
):
    server = fresh_redis()
    url = f"redis://127.0.0.1:{server.port}/0?socket_timeout=0.3"
    admin = aioredis.Redis(port=server.port)

    async def blocked_reads() -> bool:
        stats = await admin.info("commandstats")
        return int(stats.get("cmdstat_xread", {}).get("calls", 0)) >= 4

    with structlog.testing.capture_logs() as logs:
        node = await redpool.add_node("st", url, **FAST)  # blocking reads of 1 s
        await eventually(blocked_reads, what="blocking reads")
        handler = Recorder()
        await node.add_worker(handler)
        await node.dispatch_job("k")
        await node.close()
    assert not [e for e in logs if e.get("loop") == "inbox"], logs
    await admin.aclose()
