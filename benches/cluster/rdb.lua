-- wrk script for rdb's POST /command (benches/cluster/ab.sh; a friendly
-- pattern, for comparing two builds' HTTP layers, not the store):
-- WRK_MODE=put (default) writes 100-byte values under key-addressed puts
-- into collection "bench", 100,000 keys per wrk thread, so the tree grows
-- and is updated; WRK_MODE=get reads keys 1,000-1,999 of thread 0,
-- linearizably (run it after a put run; a missing key counts as non-2xx).
-- The first keys are skipped because wrk calls request() once before the
-- run, so a thread's first key written is its second.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local mode = os.getenv("WRK_MODE") or "put"
local counter = 0
local value = string.rep("v", 100)
local headers = {["Content-Type"] = "application/json"}

request = function()
  counter = counter + 1
  if mode == "put" then
    local key = string.format("t%d-%08d", thread_id, counter % 100000)
    return wrk.format("POST", "/command", headers, '{"action":"put","payload":{"collection":"bench","key":"'
      .. key .. '","value":"' .. value .. '"}}')
  end
  local key = string.format("t0-%08d", counter % 1000 + 1000)
  return wrk.format("POST", "/command", headers,
    '{"action":"get","payload":{"collection":"bench","key":"' .. key .. '"}}')
end
