-- wrk script: every request carries the next of many session cookies
-- (one Cookie header value per line in the file given after `--`), so
-- concurrent requests belong to different sessions.
local cookies = {}
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    if line ~= "" then cookies[#cookies + 1] = line end
  end
  assert(#cookies > 0, "no cookies in " .. tostring(args[1]))
  i = math.random(#cookies)
end

function request()
  i = i % #cookies + 1
  return wrk.format(nil, nil, { ["Cookie"] = cookies[i] })
end
