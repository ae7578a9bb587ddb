-- Argo CD health check for securevault.io/SecureVault.
--
-- Argo CD runs this in gopher-lua (Lua 5.1) with the object as the global
-- `obj` and shows the returned {status, message}. It reads only what the
-- operator writes: status.observedGeneration and the standard Ready,
-- Progressing and Degraded conditions (a managed upgrade shows as
-- Progressing with reason Upgrading, a rolled-back or failed one as
-- Degraded). The test cases in health_test.yaml are run by a real Lua 5.1
-- interpreter in operator/tests/argocd_health.rs.

local function condition(conditions, wanted)
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == wanted then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

-- The condition's message, else its reason, else `fallback`.
local function text(c, fallback)
  if c ~= nil then
    if type(c.message) == "string" and c.message ~= "" then
      return c.message
    end
    if type(c.reason) == "string" and c.reason ~= "" then
      return c.reason
    end
  end
  return fallback
end

local function health(o)
  local status = o.status
  if type(status) ~= "table" or type(status.conditions) ~= "table" or #status.conditions == 0 then
    return { status = "Progressing", message = "Waiting for the operator to report a status" }
  end

  local generation = nil
  if type(o.metadata) == "table" then
    generation = o.metadata.generation
  end
  local observed = status.observedGeneration
  if type(generation) == "number" and type(observed) == "number" and observed < generation then
    return {
      status = "Progressing",
      message = "Waiting for the operator: it has not yet seen generation " .. tostring(generation)
        .. " (the status describes generation " .. tostring(observed) .. ")",
    }
  end

  local conditions = status.conditions
  local degraded = condition(conditions, "Degraded")
  if is_true(degraded) then
    return { status = "Degraded", message = text(degraded, "Degraded") }
  end

  local progressing = condition(conditions, "Progressing")
  if is_true(progressing) then
    return { status = "Progressing", message = text(progressing, "Rolling out") }
  end

  local ready = condition(conditions, "Ready")
  if is_true(ready) then
    return { status = "Healthy", message = text(ready, "Ready") }
  end

  return { status = "Progressing", message = text(ready, "Waiting for the SecureVault to become ready") }
end

return health(obj)
