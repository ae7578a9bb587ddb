-- One GCRA step, atomically, on Redis's clock; the same algorithm as
-- gcra.rs (read its comment first). Every replica runs this script against
-- the same key, so they share one budget.
--
-- KEYS[1]  the budget's key (it holds the TAT in microseconds)
-- ARGV[1]  emission interval, µs (period / limit)
-- ARGV[2]  limit (the burst)
-- Returns {allowed (0|1), remaining, retry_after µs, reset µs}.

local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = interval * limit

-- Redis's clock, not the caller's: replicas with skewed clocks still agree.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - period

if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end

-- "%.0f": Lua 5.1 would print a 16-digit number in exponent form, losing
-- precision. The key expires when the budget is full again.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((period - (new_tat - now)) / interval), 0, new_tat - now}
