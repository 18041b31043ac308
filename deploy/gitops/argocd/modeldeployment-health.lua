-- Argo CD health check for siesta.dev/ModelDeployment, from status written by the operator.
--   Suspended:   spec.paused, or phase Paused (replicas frozen on purpose)
--   Degraded:    phase Degraded, or SpecValid / ScheduleValid False (the message says why)
--   Healthy:     Ready, or ScaledToZero (asleep on purpose is healthy)
--   Progressing: no status yet, a spec change not yet observed, WaitingForGPU, Loading, Scaling
local hs = {}
local status = obj.status
if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "paused: replicas frozen by spec.paused"
  return hs
end
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Siesta operator to report status"
  return hs
end
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if (condition.type == "SpecValid" or condition.type == "ScheduleValid") and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.type .. ": " .. (condition.message or condition.reason or "invalid")
      return hs
    end
  end
end
local reason = status.reason or ""
local phase = status.phase
if phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = reason ~= "" and reason or "Degraded"
  return hs
end
if phase == "Paused" then
  hs.status = "Suspended"
  hs.message = reason ~= "" and reason or "paused"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "spec change not yet observed by the operator"
  return hs
end
if phase == "Ready" or phase == "ScaledToZero" then
  hs.status = "Healthy"
  hs.message = phase .. (reason ~= "" and (": " .. reason) or "")
  return hs
end
hs.status = "Progressing"
hs.message = phase .. (reason ~= "" and (": " .. reason) or "")
return hs
