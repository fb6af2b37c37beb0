-- POST /api/v1/heroes with a nickname no other request uses.
local counter = 0
local prefix = string.format("bench %d %d", os.time(), math.random(1e9))
local roles = {"mage", "assassin", "warrior", "priest", "tank"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_prefix", prefix .. " t" .. threads)
end

request = function()
  counter = counter + 1
  local body = string.format('{"nickname": "%s %d", "role": "%s"}',
    thread_prefix, counter, roles[counter % #roles + 1])
  return wrk.format(nil, "/api/v1/heroes", nil, body)
end
