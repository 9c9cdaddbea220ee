-- Argo CD health check for fleetbridge.dev/v1alpha1 Collector (see docs/argocd.md).
-- Argo CD sets `obj` (the Collector as the API returns it); this returns {status=..., message=...}.
-- Runs in Argo CD's Lua 5.1 sandbox: only the base and table libraries (no string, no math).
-- Order: no status or a stale observedGeneration -> Progressing; ConfigValid=False -> Degraded;
-- Degraded=True (ApplyFailed, Drifted, MissingComponents) -> Degraded; Progressing=True or applying > 0 ->
-- Progressing; Ready=True -> Healthy (also when no agent matches: nothing to do).
local hs = {}

local function condition(st, t)
  if type(st.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(st.conditions) do
    if type(c) == "table" and c.type == t then
      return c
    end
  end
  return nil
end

local function text(c, fallback)
  if c ~= nil and type(c.message) == "string" and c.message ~= "" then
    return c.message
  end
  return fallback
end

local st = obj.status
local generation = nil
if type(obj.metadata) == "table" then
  generation = tonumber(obj.metadata.generation)
end
local observed = nil
if type(st) == "table" then
  observed = tonumber(st.observedGeneration)
end

if observed == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Fleetbridge operator to report status (is an OpAMPBridge serving this namespace?)"
  return hs
end
if generation ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Fleetbridge operator to observe generation " .. generation .. " (status is for generation " .. observed .. ")"
  return hs
end

local valid = condition(st, "ConfigValid")
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = "Invalid config: " .. text(valid, "ConfigValid is False")
  return hs
end

local degraded = condition(st, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = text(degraded, "Degraded is True")
  return hs
end

local applying = tonumber(st.applying) or 0
local progressing = condition(st, "Progressing")
if (progressing ~= nil and progressing.status == "True") or applying > 0 then
  hs.status = "Progressing"
  hs.message = text(progressing, applying .. " agents have not applied the config yet")
  return hs
end

local ready = condition(st, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready, "Ready")
  local unhealthy = tonumber(st.unhealthy) or 0
  if unhealthy > 0 then
    hs.message = hs.message .. "; " .. unhealthy .. " agents report themselves unhealthy"
  end
  return hs
end
if ready ~= nil and ready.status == "False" and ready.reason ~= "Applying" then
  hs.status = "Degraded"
  hs.message = text(ready, "Ready is False")
  return hs
end

hs.status = "Progressing"
hs.message = text(ready, "Waiting for the Ready condition")
return hs
