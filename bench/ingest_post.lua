-- wrk script of the ingest-http bench: POSTs generic inbound messages, each with a channel
-- message id no other request of the run has (run id, thread, counter), so ingest publishes
-- every one rather than answering a retry. Arguments (after --): run id, API key, and the
-- number of messages per request (1: POST /v1/messages; more: a batch).
-- done() prints the figures as one line: WRK_JSON {...}

local threads = {}
local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
  table.insert(threads, thread)
end

local TEXTS = {
  "my withdrawal is pending for hours",
  "my account was hacked, please help",
  "how do I create an api key",
  "我的提现还没到账",
  "アカウントが乗っ取られました",
  "출금이 지연되고 있어요",
  "hello, a question about KYC",
}
local CHANNELS = { "chat", "chat", "telegram", "whatsapp", "form" }

local run_id, per_request, path
local counter = 0

local function one_message()
  counter = counter + 1
  local conversation = math.random(1, 100000)
  return string.format(
    '{"channel":"%s","channel_message_id":"%s-%d-%d","conversation_ref":"conv-%d",'
      .. '"customer":{"id":"cust-%d","language":"en"},"text":"%s"}',
    CHANNELS[math.random(#CHANNELS)], run_id, thread_id, counter, conversation,
    conversation, TEXTS[math.random(#TEXTS)]
  )
end

function init(args)
  run_id = args[1]
  per_request = tonumber(args[3] or "1")
  path = per_request > 1 and "/v1/messages/batch" or "/v1/messages"
  math.randomseed(os.time() * 1000 + thread_id)
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body
  if per_request > 1 then
    local items = {}
    for i = 1, per_request do
      items[i] = one_message()
    end
    body = '{"messages":[' .. table.concat(items, ",") .. "]}"
  else
    body = one_message()
  end
  return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max
  ))
end
