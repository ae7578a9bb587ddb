-- Spends an amount from several counters at once, all or none: a token
-- budget's reservation against its API key's and its account's counters,
-- for the day and the month. Every replica runs this against the same keys,
-- so they share one budget and two of them never both take its last room.
--
-- KEYS[i]        a counter (absent: 0)
-- ARGV[1]        the amount
-- ARGV[1 + i]    KEYS[i]'s limit
-- ARGV[1 + n + i] KEYS[i]'s lifetime in ms (past the end of its period)
-- Returns {0, 0} when spent, or {i, used} when KEYS[i], holding used, has
-- no room (nothing is spent): the refusal says what is left as of the very
-- check that refused it.

local amount = tonumber(ARGV[1])
local n = #KEYS
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + amount > tonumber(ARGV[1 + i]) then
    return {i, used}
  end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], amount)
  redis.call('PEXPIRE', KEYS[i], ARGV[1 + n + i])
end
return {0, 0}
