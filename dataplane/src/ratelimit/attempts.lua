-- Counts one failure in a sliding window and blocks once there are too many
-- (brute-force protection; see auth/brute_force.rs).
--
-- KEYS[1]  sorted set of failure times (µs) in the window
-- KEYS[2]  the block flag
-- ARGV[1]  window, µs
-- ARGV[2]  failures that trigger a block
-- ARGV[3]  block duration, ms
-- Returns the block's remaining time in ms, or 0 when not blocked.

local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local block_ms = tonumber(ARGV[3])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

-- Old attempts leave the window by themselves, and the whole set expires
-- with it.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
-- Members must differ even for two failures in the same microsecond.
local member = string.format('%.0f', now) .. '-' .. redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], string.format('%.0f', now), member)
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))

if redis.call('ZCARD', KEYS[1]) >= max then
  redis.call('SET', KEYS[2], '1', 'PX', block_ms)
  redis.call('DEL', KEYS[1])
  return block_ms
end
return 0
