-- Shared by the wrk scripts: numbers threads, and prints one RESULT line
-- that compare.sh reads.
local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors_status=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.status, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
