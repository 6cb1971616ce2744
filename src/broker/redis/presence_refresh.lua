-- Keep this instance's present subjects alive; sweep expired ones everywhere.
-- KEYS: 1 index set of presence channels
-- ARGV: 1 key prefix for member zsets, 2 ttl ms, then channel, subject pairs
-- Returns {gone, missing}: gone is {channel, subject, ...} for members that
-- expired (the caller, exactly one instance since removal is atomic,
-- announces their leave); missing is {channel, subject, ...} for local
-- members that had no entry (swept while this instance could not refresh
-- them): they are not re-added here, the caller joins them again, with
-- what they show and an announcement.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local missing = {}
for i = 3, #ARGV, 2 do
  local key = ARGV[1] .. ARGV[i]
  local score = redis.call('ZSCORE', key, ARGV[i + 1])
  if score then
    redis.call('ZADD', key, 'XX', 'GT', now + ttl, ARGV[i + 1])
  else
    table.insert(missing, ARGV[i])
    table.insert(missing, ARGV[i + 1])
  end
end
local gone = {}
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. channel
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now)
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    for _, subject in ipairs(expired) do
      redis.call('HDEL', key .. '#i', subject)
      table.insert(gone, channel)
      table.insert(gone, subject)
    end
  end
  if redis.call('ZCARD', key) == 0 then
    redis.call('SREM', KEYS[1], channel)
  end
end
return {gone, missing}
