-- PATCH /api/v1/heroes/{uuid}: a random seeded hero gets a new role.
local uuids = {}
for line in io.lines(os.getenv("BENCH_UUIDS")) do uuids[#uuids + 1] = line end
local roles = {"mage", "assassin", "warrior", "priest", "tank"}
wrk.method = "PATCH"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

request = function()
  local body = string.format('{"role": "%s"}', roles[math.random(#roles)])
  return wrk.format(nil, "/api/v1/heroes/" .. uuids[math.random(#uuids)], nil, body)
end
