-- Corrects counters spend.lua reserved from once the real amount is known:
-- adds ARGV[1] (negative: gives back) to each counter of KEYS that still
-- exists. One that expired meanwhile (its period ended) stays gone rather
-- than coming back without a lifetime; none goes below zero.

local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local value = redis.call('INCRBY', KEYS[i], delta)
    if value < 0 then
      redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
  end
end
return 0
