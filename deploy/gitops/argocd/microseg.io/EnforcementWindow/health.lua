-- Argo CD health of a microseg EnforcementWindow (README "GitOps"). A window reports its own
-- health; a stalled policy of its wave is Degraded itself and named in the window's message.
--   Progressing  microseg has not observed this generation yet
--   Suspended    spec.suspend: no policy of the wave enforces (Ready=True, reason Suspended)
--   Healthy      Ready=True
local hs = {}

local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

local generation = obj.metadata.generation
if obj.status == nil or obj.status.observedGeneration == nil or generation == nil
    or obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for microseg to observe generation " .. tostring(generation)
  return hs
end

local ready = condition("Ready")
if ready == nil or ready.status ~= "True" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.reason == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Healthy"
end
hs.message = ready.message
return hs
