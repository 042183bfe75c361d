-- wrk script for etcd 3.4's JSON gateway, the same load as rdb.lua:
-- WRK_MODE=put writes 100-byte values, WRK_MODE=get reads linearizably.
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local mode = os.getenv("WRK_MODE") or "put"
local counter = 0
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return chars:sub(c + 1, c + 1)
  end) .. ({"", "==", "="})[#data % 3 + 1])
end

local value = b64(string.rep("v", 100))

request = function()
  counter = counter + 1
  if mode == "put" then
    local key = b64(string.format("bench/t%d-%08d", thread_id, counter % 100000))
    return wrk.format("POST", "/v3/kv/put", {["Content-Type"] = "application/json"},
      '{"key":"' .. key .. '","value":"' .. value .. '"}')
  end
  local key = b64(string.format("bench/t0-%08d", counter % 1000 + 1000))
  return wrk.format("POST", "/v3/kv/range", {["Content-Type"] = "application/json"},
    '{"key":"' .. key .. '"}')
end
