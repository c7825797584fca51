-- wrk script of deploy/scripts/soak.sh: reads across every user of the token file (one "role token" a line),
-- each asking a view of its role (default parameters: a bounded set of entries the cache fills, so memory
-- must level off), with a share of forced refreshes; counts answers by status per thread and
-- prints one summary line per run for soak.sh to parse.
local tokens, roles = {}, {}
local views = {
  client = { "client-stats", "client-loyalty", "client-analytics" },
  writer = { "writer-payment-info", "writer-earnings", "writer-performance", "writer-order-queue" },
  admin = { "admin-overview", "admin-analytics", "admin-reviews", "admin-disputes", "admin-refunds", "admin-reminders" },
}
local refresh_share = tonumber(os.getenv("SOAK_REFRESH_SHARE") or "0.02")
statuses = {}
stale = 0

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("SOAK_TOKENS")) do
    local role, token = line:match("^(%S+) (%S+)$")
    if role then
      roles[#roles + 1] = role
      tokens[#tokens + 1] = token
    end
  end
  math.randomseed(os.time() + #threads + tonumber(tostring(statuses):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  local i = math.random(#tokens)
  local list = views[roles[i]]
  local path = "/api/dashboards/" .. list[math.random(#list)]
  if math.random() < refresh_share then
    path = path .. (path:find("?", 1, true) and "&" or "?") .. "refresh=true"
  end
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. tokens[i] })
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and body:find('"stale":true', 1, true) then stale = stale + 1 end
end

function done(summary, latency, requests)
  local total, stale_total = {}, 0
  for _, thread in ipairs(threads) do
    stale_total = stale_total + thread:get("stale")
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  local ok, unavailable, other = 0, 0, 0
  for status, count in pairs(total) do
    if status >= 200 and status < 400 then ok = ok + count
    elseif status == 503 then unavailable = unavailable + count
    else other = other + count end
  end
  local e = summary.errors
  io.write(string.format("SOAK requests=%d ok=%d stale=%d s503=%d other=%d socket_errors=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
    summary.requests, ok, stale_total, unavailable, other, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
