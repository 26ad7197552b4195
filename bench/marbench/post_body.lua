-- wrk script: POSTs one fixed body, stops a thread after a request budget, and prints the run's
-- outcome as one JSON line. Arguments after `--`: body file, content type, max responses per thread,
-- then any further headers, each as "Name: value".

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = args[2]
  budget = tonumber(args[3])
  for index = 4, #args do
    local name, value = args[index]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
  responses = 0
  non_ok = 0
  statuses = {}
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 200 then
    non_ok = non_ok + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
  if responses >= budget then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local non_ok_total = 0
  local by_status = {}
  for _, thread in ipairs(threads) do
    non_ok_total = non_ok_total + thread:get("non_ok")
    for status, count in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  local status_items = {}
  for status, count in pairs(by_status) do
    table.insert(status_items, string.format('"%d": %d', status, count))
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_ok": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "statuses": {%s}}\n',
    summary.requests, summary.duration, non_ok_total, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, table.concat(status_items, ", ")))
end
