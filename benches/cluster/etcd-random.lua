-- wrk script for etcd 3.4's JSON gateway with the load of `rdb bench`:
-- WRK_MODE=put writes 100-byte values under random new keys ("bench/" and
-- 16 hex digits from math.random, seeded per thread: new keys, scattered);
-- WRK_MODE=get reads, linearizably, random keys from KEYS_FILE (one
-- base64-encoded key per line, keys the native client wrote).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local mode = os.getenv("WRK_MODE") or "put"
local value = string.rep("dg", 50) -- base64 of 75 bytes is 100 characters
local keys = {}
local headers = {["Content-Type"] = "application/json"}
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64
      out[#out + 1] = b64chars:sub(k + 1, k + 1)
    end
  end
  local pad = (3 - #data % 3) % 3
  local s = table.concat(out)
  return s:sub(1, #s - pad) .. string.rep("=", pad)
end

init = function(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919 + math.floor(os.clock() * 1e6))
  if mode == "get" then
    for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = line end
  end
end

request = function()
  if mode == "put" then
    local key = string.format("bench/%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    return wrk.format("POST", "/v3/kv/put", headers, '{"key":"' .. b64(key) .. '","value":"' .. value .. '"}')
  end
  local key = keys[math.random(1, #keys)]
  return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. key .. '"}')
end
