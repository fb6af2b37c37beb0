-- GET /api/v1/heroes: the first page, newest first.
request = function()
  return wrk.format("GET", "/api/v1/heroes")
end
