-- wrk script of ./bench.sh: every request carries a JWT picked at random from a file of tokens
-- (one line each; one line = one hot key, 10,000 lines = 10,000 users' keys).
--   wrk -t2 -c64 -d10s --latency -s tokens.lua URL -- TOKENS_FILE
-- done() prints one line "BENCH_JSON {...}" with the figures the driver reads.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local tokens = {}
local headers = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      tokens[#tokens + 1] = "Bearer " .. line
    end
  end
  if #tokens == 0 then
    error("no tokens in " .. tostring(args[1]))
  end
  math.randomseed(os.time() * 1000 + id)
end

function request()
  headers["Authorization"] = tokens[math.random(#tokens)]
  return wrk.format("GET", nil, headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
