-- Reserves one login attempt under each key, before its password is
-- verified (brute-force protection; see auth/brute_force.rs). All keys or
-- none: the attempt goes ahead only if no key is blocked and no key already
-- holds `max` failures and attempts in flight within the window. So however
-- many logins arrive at once, at most `max` passwords per key are verified
-- before the block.
--
-- For each key i (0-based), three Redis keys:
-- KEYS[3i+1]  sorted set of failure times (µs) in the window
-- KEYS[3i+2]  sorted set of attempts in flight (µs), member = the attempt
-- KEYS[3i+3]  the block flag
-- ARGV[1]     window, µs
-- ARGV[2]     failures that trigger a block
-- ARGV[3]     how long an attempt may stay in flight, µs: a process that
--             died mid-verification frees its place after this
-- ARGV[4]     this attempt's member (unique)
-- Returns 0 when reserved; the block's remaining ms when a key is blocked;
-- -1 when a key is full of attempts in flight.

local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local hold = tonumber(ARGV[3])
local member = ARGV[4]

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local keys = #KEYS / 3

for i = 0, keys - 1 do
  local failures, pending, flag = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local blocked = redis.call('PTTL', flag)
  if blocked > 0 then
    return blocked
  end
  redis.call('ZREMRANGEBYSCORE', failures, '-inf', string.format('%.0f', now - window))
  redis.call('ZREMRANGEBYSCORE', pending, '-inf', string.format('%.0f', now - hold))
  if redis.call('ZCARD', failures) + redis.call('ZCARD', pending) >= max then
    return -1
  end
end

for i = 0, keys - 1 do
  local pending = KEYS[3 * i + 2]
  redis.call('ZADD', pending, string.format('%.0f', now), member)
  redis.call('PEXPIRE', pending, math.ceil(hold / 1000))
end
return 0
