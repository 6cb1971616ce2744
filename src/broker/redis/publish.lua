-- Publish one message: assign the next id, append to the channel's history,
-- trim it by size and age, and announce it to every instance, atomically.
--
-- KEYS: 1 epoch, 2 seq, 3 history zset, 4 last-id hash, 5 floor hash,
--       6 idempotency key (or a dummy key when ARGV[7] is '0')
-- ARGV: 1 epoch (hex), 2 channel, 3 body JSON, 4 history size, 5 history ttl ms,
--       6 pub/sub channel, 7 '1' when an idempotency key is given
-- Returns {1, member} for a new message, {0, member} for a repeated idempotency
-- key, {-1, current epoch} when the caller's epoch is stale.
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then
  return {-1, epoch or ''}
end
if ARGV[7] == '1' then
  local prev = redis.call('GET', KEYS[6])
  if prev then
    return {0, prev}
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = redis.call('INCR', KEYS[2])
local member = seq .. ':' .. now .. ':' .. ARGV[3]
local size = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], seq, member)
redis.call('HSET', KEYS[4], ARGV[2], seq)
local floor = nil
local n = redis.call('ZCARD', KEYS[3])
if n > size then
  local gone = redis.call('ZRANGE', KEYS[3], 0, n - size - 1, 'WITHSCORES')
  floor = gone[#gone]
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - size - 1)
end
while true do
  local front = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #front == 0 then break end
  local ts = tonumber(string.match(front[1], '^%d+:(%d+):'))
  if now - ts <= ttl then break end
  floor = front[2]
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, 0)
end
if floor then
  redis.call('HSET', KEYS[5], ARGV[2], floor)
end
redis.call('PEXPIRE', KEYS[3], ttl + 1000)
if ARGV[7] == '1' then
  redis.call('SET', KEYS[6], member, 'PX', math.max(ttl, 1))
end
redis.call('PUBLISH', ARGV[6], ARGV[1] .. ':' .. member)
return {1, member}
