-- Argo CD health of a microseg SegmentationPolicy (README "GitOps"). Uses only the base and
-- table libraries, as Argo CD's Lua sandbox allows.
--   Progressing  microseg has not observed this generation yet, or Reconciling=True (retrying)
--   Degraded     Stalled=True: a change in Git is needed (window or peer missing, invalid spec,
--                no members, name clash, object not ours, rolled back); or Ready=False
--   Suspended    Held by design (approval, suspend, blackout, an evidence gate): Ready=True
--   Healthy      Ready=True: Pending, Monitoring, Enforcing, Completed as scheduled
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

local function says(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local generation = obj.metadata.generation
if obj.status == nil or obj.status.observedGeneration == nil or generation == nil
    or obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for microseg to observe generation " .. tostring(generation)
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = says(stalled)
  return hs
end

local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = says(reconciling)
  return hs
end

local ready = condition("Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = says(ready)
  return hs
end

local phase = obj.status.phase
if phase == nil then
  phase = "Pending"
end
if phase == "Held" then
  hs.status = "Suspended"
  hs.message = "Held: " .. says(ready)
  return hs
end
hs.status = "Healthy"
if ready.message ~= nil and ready.message ~= "" then
  hs.message = phase .. ": " .. ready.message
else
  hs.message = phase
end
return hs
