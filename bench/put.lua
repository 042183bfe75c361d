-- wrk script: key-addressed puts of 100-byte values into collection "bench",
-- keys drawn from 100,000 per thread so that the tree grows and is updated.
local counter = 0
local value = string.rep("v", 100)
local thread_id = 0

function setup(thread)
  thread:set("thread_id", thread_id)
  thread_id = thread_id + 1
end

request = function()
  counter = counter + 1
  local key = string.format("t%d-%08d", thread_id, counter % 100000)
  local body = '{"action":"put","payload":{"collection":"bench","key":"' .. key ..
      '","value":"' .. value .. '"}}'
  return wrk.format("POST", "/command", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors_status=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.status, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
