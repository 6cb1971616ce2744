-- A subject's first local connection on this instance joined a presence channel.
-- KEYS: 1 member zset (subject -> expiry ms), 2 index set of presence channels,
--       3 member info hash (subject -> JSON the member shows)
-- ARGV: 1 subject, 2 ttl ms, 3 channel, 4 info JSON (empty: none)
-- Returns 1 when the subject is new to the channel on every instance (announce
-- a join), 0 when it was already present (another instance, or a reconnect
-- within the grace period).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[2]), ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
end
if old < now then
  return 1
end
return 0
