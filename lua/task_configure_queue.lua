-- task_configure_queue: set a queue's pool-wide caps (the newer call wins), then fill slots
-- a raised cap opened.
-- ARG: queue, max_running (-1: none), max_queued (-1: none).
-- Returns 'ok'.
-- Invariant: placements check max_running in the same step as they assign.
redis.call('HSET', TQUEUES, ARG[1], cmsgpack.pack({mr = tonumber(ARG[2]), mq = tonumber(ARG[3])}))
pull_all(now_ms(), 100)
return 'ok'
