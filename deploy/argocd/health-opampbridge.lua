-- Argo CD health check for fleetbridge.dev/v1alpha1 OpAMPBridge (see docs/argocd.md).
-- Argo CD sets `obj` (the OpAMPBridge as the API returns it); this returns {status=..., message=...}.
-- Runs in Argo CD's Lua 5.1 sandbox: only the base and table libraries (no string, no math).
-- Order: no status or a stale observedGeneration -> Progressing; AgentsAuthenticated=False other
-- than AuthenticationDisabled (TokensUnavailable: agents are refused) -> Degraded; Ready not True
-- (NotServing: waiting for the Kubernetes caches) -> Progressing; else Healthy, with a warning in
-- the message when authentication is disabled (spec.auth.mode: none).
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
  hs.message = "Waiting for the Fleetbridge operator to report status (is it running for this OpAMPBridge?)"
  return hs
end
if generation ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Fleetbridge operator to observe generation " .. generation .. " (status is for generation " .. observed .. ")"
  return hs
end

local auth = condition(st, "AgentsAuthenticated")
if auth ~= nil and auth.status == "False" and auth.reason ~= "AuthenticationDisabled" then
  hs.status = "Degraded"
  hs.message = text(auth, "Agents cannot authenticate")
  return hs
end

local ready = condition(st, "Ready")
if ready == nil or ready.status ~= "True" then
  hs.status = "Progressing"
  hs.message = text(ready, "Waiting for the Ready condition")
  return hs
end

hs.status = "Healthy"
hs.message = text(ready, "Serving OpAMP")
if auth ~= nil and auth.status == "False" then
  hs.message = "Warning: agents are not authenticated (" .. text(auth, "spec.auth.mode is none") .. "). " .. hs.message
end
return hs
