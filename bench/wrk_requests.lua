-- wrk script for bench/patch_throughput.py.
-- BENCH_MODE=patch: PATCH {"status": "cancelled"} with a token, each request on a different
--   running execution, read from BENCH_IDS_FILE (one id a line), split between the threads.
-- BENCH_MODE=peer: the same PATCH without a token (the FastAPI peer has no authentication).
-- BENCH_MODE=heartbeat: POST .../heartbeat with a token, going round the ids of BENCH_IDS_FILE
--   (a heartbeat may repeat: the executions stay running).
-- BENCH_MODE=floor: GET /healthz, no database, no authentication.
-- done() prints one JSON line with the figures the benchmark reads.

local mode = os.getenv("BENCH_MODE")
local threads = {}

function setup(thread)
   thread:set("thread_index", #threads)
   table.insert(threads, thread)
end

function init(args)
   thread_count = tonumber(os.getenv("BENCH_WRK_THREADS"))
   ids = {}
   next_index = 0
   wrapped = 0
   if mode ~= "floor" then
      local line_number = 0
      for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
         if line_number % thread_count == thread_index then
            table.insert(ids, line)
         end
         line_number = line_number + 1
      end
      headers = {["Content-Type"] = "application/json"}
      if mode ~= "peer" then
         headers["Authorization"] = "Token " .. os.getenv("BENCH_TOKEN")
      end
   end
end

function request()
   if mode == "floor" then
      return wrk.format("GET", "/healthz")
   end
   next_index = next_index + 1
   if mode == "heartbeat" then
      if next_index > #ids then
         next_index = 1
      end
      return wrk.format("POST", "/api/v1/executions/" .. ids[next_index] .. "/heartbeat", headers)
   end
   if next_index > #ids then
      -- Ran out of running executions: these requests would be no-ops; counted as errors.
      next_index = 1
      wrapped = wrapped + 1
   end
   return wrk.format("PATCH", "/api/v1/executions/" .. ids[next_index], headers, '{"status": "cancelled"}')
end

function done(summary, latency, requests)
   local wrapped_total = 0
   for _, thread in ipairs(threads) do
      wrapped_total = wrapped_total + (thread:get("wrapped") or 0)
   end
   local errors = summary.errors
   io.write(string.format(
      '{"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, '
      .. '"status_errors": %d, "socket_errors": %d, "ids_exhausted": %d}\n',
      summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, errors.status,
      errors.connect + errors.read + errors.write + errors.timeout, wrapped_total))
end
