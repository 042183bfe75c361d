-- wrk script: linearizable gets by key of keys written by put.lua
-- (run it after a put run; missing keys answer 404, counted as errors).
local counter = 0

request = function()
  counter = counter + 1
  local key = string.format("t0-%08d", counter % 1000 + 1)
  local body = '{"action":"get","payload":{"collection":"bench","key":"' .. key .. '"}}'
  return wrk.format("POST", "/command", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors_status=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.status, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
