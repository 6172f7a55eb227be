"""The Lua the partition commit runs: one script to read, one to write.

One command carries a whole batch (instead of thousands of small ones, each costing Python time
to pack and parse and, under load, a scheduler round trip), and the commit is a compare-and-set:
it checks, atomically with its writes, that what the fold read is still true. All keys share the partition's hash tag `{pN}`; the fixed ones are declared in KEYS, the
per-item ones (run, index, per-second keys) are built by the caller from the same tag.
"""

from __future__ import annotations

# KEYS: nb dedup bucket sets, nr run hashes, history ids. ARGV: nb, nr, digests...
# Returns {applied flags ("0"/"1" per digest), history size, f1, v1, n1, f2, v2, n2, ...}.
LOAD = """
local nb, nr = tonumber(ARGV[1]), tonumber(ARGV[2])
local nd = #ARGV - 2
local flags = {}
for i = 1, nd do flags[i] = '0' end
for b = 1, nb do
  if redis.call('EXISTS', KEYS[b]) == 1 then
    local i = 1
    while i <= nd do
      local j = math.min(nd, i + 3999)
      local hits = redis.call('SMISMEMBER', KEYS[b], unpack(ARGV, i + 2, j + 2))
      for k = 1, #hits do
        if hits[k] == 1 then flags[i + k - 1] = '1' end
      end
      i = j + 1
    end
  end
end
local out = {table.concat(flags), redis.call('ZCARD', KEYS[nb + nr + 1])}
for r = 1, nr do
  local fvn = redis.call('HMGET', KEYS[nb + r], 'f', 'v', 'n')
  out[#out + 1] = fvn[1] or ''
  out[#out + 1] = fvn[2] or ''
  out[#out + 1] = fvn[3] or '0''
end
return out
"""

# KEYS: stats, history ids, history data, history index registry, feed, outbox, marker set,
# run index registry. ARGV: sections, each introduced by its item count (see store._commit_args).
COMMIT = """
local pos = 0
local function nxt() pos = pos + 1 return ARGV[pos] end
local function num() return tonumber(nxt()) end
local function take(n)
  local t = {}
  for i = 1, n do t[i] = nxt() end
  return t
end
local function chunked(cmd, key, list, head)
  local i = 1
  while i <= #list do
    local j = math.min(#list, i + 3999)
    if head then
      redis.call(cmd, key, head, unpack(list, i, j))
    else
      redis.call(cmd, key, unpack(list, i, j))
    end
    i = j + 1
  end
end

local type_field, data_field = nxt(), nxt()

-- compare-and-set: nothing is written if, since the caller read them, one of these events was
-- applied by someone else or one of these runs changed (their version `n` moved)
local buckets = take(num())
local markers = take(num())
for _, bucket in ipairs(buckets) do
  if #markers > 0 and redis.call('EXISTS', bucket) == 1 then
    local i = 1
    while i <= #markers do
      local j = math.min(#markers, i + 3999)
      for _, hit in ipairs(redis.call('SMISMEMBER', bucket, unpack(markers, i, j))) do
        if hit == 1 then return 0 end
      end
      i = j + 1
    end
  end
end
local versions = take(2 * num())
for i = 1, #versions, 2 do
  if (redis.call('HGET', versions[i], 'n') or '0') ~= versions[i + 1] then return 0 end
end

-- dedup markers
local marker_expire = nxt()
if #markers > 0 then
  chunked('SADD', KEYS[7], markers)
  redis.call('EXPIREAT', KEYS[7], marker_expire)
end

-- stats counters, first-event time
for i = 1, num() do
  redis.call('HINCRBY', KEYS[1], nxt(), nxt())
end
local since = nxt()
if since ~= '' then redis.call('HSETNX', KEYS[1], 'since', since) end

-- events per second buckets
local eps_ttl = nxt()
for i = 1, num() do
  local key = nxt()
  redis.call('INCRBY', key, nxt())
  redis.call('EXPIRE', key, eps_ttl)
end

-- history
local n = num()
local ids, data = {}, {}
for i = 1, n do
  local member, raw = nxt(), nxt()
  ids[#ids + 1] = '0'
  ids[#ids + 1] = member
  data[#data + 1] = member
  data[#data + 1] = raw
end
if n > 0 then
  chunked('ZADD', KEYS[2], ids)
  chunked('HSET', KEYS[3], data)
end
for g = 1, num() do
  local key, members = nxt(), {}
  for i = 1, num() do
    members[#members + 1] = '0'
    members[#members + 1] = nxt()
  end
  chunked('ZADD', key, members)
  redis.call('SADD', KEYS[4], key)
end

-- runs: facts + view, expiry, index moves
for i = 1, num() do
  local key = nxt()
  redis.call('HSET', key, 'f', nxt(), 'v', nxt(), 'n', nxt())
  redis.call('EXPIREAT', key, nxt())
end
for g = 1, num() do
  local key = nxt()
  chunked('ZREM', key, take(num()))
end
for g = 1, num() do
  local key = nxt()
  chunked('ZADD', key, take(2 * num()))
  redis.call('SADD', KEYS[8], key)
end
local children_ttl = nxt()
for i = 1, num() do
  local key = nxt()
  redis.call('SADD', key, nxt())
  redis.call('EXPIRE', key, children_ttl)
end

-- feed entries, notification outbox
local maxlen = nxt()
for i = 1, num() do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', maxlen, '*', type_field, nxt(), data_field, nxt())
end
local outbox = take(2 * num())
if #outbox > 0 then chunked('HSET', KEYS[6], outbox) end
return 1
"""

# KEYS: history ids, history data, index registry. ARGV: entries to keep.
TRIM_HISTORY = """
local total = redis.call('ZCARD', KEYS[1])
local excess = total - tonumber(ARGV[1])
if excess <= 0 then return 0 end
local removed = 0
while removed < excess do
  local n = math.min(1000, excess - removed)
  local members = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  if #members == 0 then break end
  redis.call('ZREM', KEYS[1], unpack(members))
  redis.call('HDEL', KEYS[2], unpack(members))
  local cutoff = '[' .. members[#members]
  for _, idx in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    redis.call('ZREMRANGEBYLEX', idx, '-', cutoff)
    if redis.call('ZCARD', idx) == 0 then
      redis.call('DEL', idx)
      redis.call('SREM', KEYS[3], idx)
    end
  end
  removed = removed + #members
end
return removed
"""
