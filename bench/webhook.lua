-- wrk script for bench/webhook.py: every request is a different, pre-signed WeChat callback.
--
--   wrk -t2 -c64 -d15s --latency --timeout 10s -s bench/webhook.lua http://127.0.0.1:PORT \
--       -- requests.tsv 2
--
-- requests.tsv (written by bench/webhook.py right before the run, so the timestamps are inside
-- the bot's ±300 s window) has one request per line: "<path?query>\t<body>". Thread k of n
-- takes lines k, k+n, k+2n, ... so no two threads send the same message, and cycles through
-- them; each wrap-around is counted, because a replayed MsgId would only measure the dedup path.
--
-- A response counts as bad unless it is 200 with an <Encrypt> body (a safe-mode passive reply;
-- "success" means the bot had nothing to say, which is a failure here too). done() prints one
-- line that bench/webhook.py parses:
--   RESULT requests=N duration_us=N p50_us=N p90_us=N p99_us=N max_us=N non200=N bad=N ...

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local file = args[1]
  local nthreads = tonumber(args[2] or "1")
  items = {}
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == id then
      local tab = line:find("\t", 1, true)
      items[#items + 1] = { line:sub(1, tab - 1), line:sub(tab + 1) }
    end
    i = i + 1
  end
  if #items == 0 then
    error("no requests for thread " .. id .. " in " .. file)
  end
  count = #items
  headers = { ["Content-Type"] = "text/xml; charset=utf-8" }
  index = 0
  wraps = 0
  non200 = 0
  bad = 0
end

function request()
  index = index + 1
  if index > #items then
    index = 1
    wraps = wraps + 1
  end
  local item = items[index]
  return wrk.format("POST", item[1], headers, item[2])
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif not body:find("<Encrypt>", 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local non200_total, bad_total, wraps_total, sent = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    non200_total = non200_total + thread:get("non200")
    bad_total = bad_total + thread:get("bad")
    wraps_total = wraps_total + thread:get("wraps")
    sent = sent + thread:get("count") * thread:get("wraps") + thread:get("index")
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d "
      .. "non200=%d bad=%d wraps=%d sent=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, non200_total, bad_total, wraps_total, sent,
    e.connect, e.read, e.write, e.timeout))
end
