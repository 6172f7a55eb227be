-- POST a body read from a file; every "@ID@" in it gets a unique value per request.
-- wrk ... -s post.lua URL -- BODY_FILE RUN_ID
local pieces, counter, prefix, headers
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  pieces = {}
  local start = 1
  while true do
    local i, j = string.find(body, "@ID@", start, true)
    if not i then
      pieces[#pieces + 1] = string.sub(body, start)
      break
    end
    pieces[#pieces + 1] = string.sub(body, start, i - 1)
    start = j + 1
  end
  counter = 0
  prefix = (args[2] or "run") .. "-" .. tostring(tid or 0) .. "-"
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  counter = counter + 1
  local parts = { pieces[1] }
  local base = prefix .. counter .. "-"
  for k = 2, #pieces do
    parts[#parts + 1] = base .. (k - 1)
    parts[#parts + 1] = pieces[k]
  end
  return wrk.format("POST", nil, headers, table.concat(parts))
end
