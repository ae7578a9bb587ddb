-- wrk script for the email benchmark: every request is a POST
-- /api/send-email of a small transactional email with its own subject, so
-- each one is a new row in the outbox and a new message in mailpit.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local thread_id = 0
local counter = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"to":"bench@example.com","subject":"Benchmark %d-%d","text":"Your order has shipped. Thank you for your purchase."}',
    id or 0, counter)
  return wrk.format(nil, nil, nil, body)
end
