-- Messages of one channel after a position, or a gap when history no longer
-- reaches back that far.
--
-- KEYS: 1 epoch, 2 seq, 3 history zset, 4 last-id hash, 5 floor hash
-- ARGV: 1 epoch (hex), 2 channel, 3 after, 4 history ttl ms, 5 most members
--       to return (negative: all)
-- Returns {1, member...} (the oldest after the position; possibly no
-- members), {0} for a gap, or
-- {-1, current epoch} when the caller's epoch is stale.
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then
  return {-1, epoch or ''}
end
local after = tonumber(ARGV[3])
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
if after > head then
  return {0}
end
local last = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
if after >= last then
  return {1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
local floor = tonumber(redis.call('HGET', KEYS[5], ARGV[2]) or '0')
-- Messages past their age count as evicted even before a publish trims them.
while true do
  local front = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #front == 0 then break end
  local ts = tonumber(string.match(front[1], '^%d+:(%d+):'))
  if now - ts <= ttl then break end
  floor = tonumber(front[2])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, 0)
  redis.call('HSET', KEYS[5], ARGV[2], floor)
end
if redis.call('ZCARD', KEYS[3]) == 0 then
  -- Everything this channel ever had is gone (expired with its key).
  floor = last
end
if after < floor then
  return {0}
end
local out = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[3], '+inf', 'LIMIT', 0, ARGV[5])
table.insert(out, 1, 1)
return out
