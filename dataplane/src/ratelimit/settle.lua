-- Settles a reserved login attempt (see reserve.lua) once its password was
-- verified: a failure turns its place in flight into a failure, and the
-- failure that reaches `max` within the window blocks the key; anything
-- else frees its place.
--
-- For each key i (0-based), the same three Redis keys as reserve.lua:
-- KEYS[3i+1]  failures, KEYS[3i+2] attempts in flight, KEYS[3i+3] block flag
-- ARGV[1]     this attempt's member
-- ARGV[2]     1: it failed; 0: it did not (success, or not judged)
-- ARGV[3]     window, µs
-- ARGV[4]     failures that trigger a block
-- ARGV[5]     block duration, ms
-- ARGV[6..]   one flag per key: 1 to clear that key's failures (a success
--             clears its account's count, never its address's)
-- Returns the block's length in ms when this failure started one, else 0.

local member = ARGV[1]
local failed = ARGV[2] == '1'
local window = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local block_ms = tonumber(ARGV[5])

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local started = 0

for i = 0, #KEYS / 3 - 1 do
  local failures, pending, flag = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  redis.call('ZREM', pending, member)
  if failed then
    redis.call('ZREMRANGEBYSCORE', failures, '-inf', string.format('%.0f', now - window))
    redis.call('ZADD', failures, string.format('%.0f', now), member)
    redis.call('PEXPIRE', failures, math.ceil(window / 1000))
    if redis.call('ZCARD', failures) >= max then
      redis.call('SET', flag, '1', 'PX', block_ms)
      redis.call('DEL', failures)
      started = block_ms
    end
  elseif ARGV[6 + i] == '1' then
    redis.call('DEL', failures)
  end
end
return started
