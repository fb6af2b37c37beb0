-- GET /api/v1/heroes/{uuid} for a random seeded hero.
local uuids = {}
for line in io.lines(os.getenv("BENCH_UUIDS")) do uuids[#uuids + 1] = line end

request = function()
  return wrk.format("GET", "/api/v1/heroes/" .. uuids[math.random(#uuids)])
end
