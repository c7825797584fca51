-- wrk script of ./bench.sh abuse: one caller (one token) as fast as its connections go, either the same path
-- (for example ?refresh=true) or cycling a parameter over 1..365 (a slider bound to days).
--   wrk -t2 -c64 -d10s -s abuse.lua URL -- TOKEN [PARAMETER]
-- done() prints one line "BENCH_JSON {...}" with the requests and the answers by status.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local headers = {}
local parameter = nil
local sent = 0
statuses = {}

function init(args)
  headers["Authorization"] = "Bearer " .. args[1]
  parameter = args[2]
  sent = id * 1000 -- the threads cycle from different values
end

function request()
  if parameter == nil then
    return wrk.format("GET", nil, headers)
  end
  sent = sent + 1
  local separator = string.find(wrk.path, "?", 1, true) and "&" or "?"
  return wrk.format("GET", wrk.path .. separator .. parameter .. "=" .. ((sent % 365) + 1), headers)
end

function response(status, response_headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(total) do
    parts[#parts + 1] = string.format('"%d":%d', status, count)
  end
  io.write(string.format('BENCH_JSON {"requests":%d,"duration_us":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, table.concat(parts, ",")))
end
