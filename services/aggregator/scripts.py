"""The Lua the partition commit runs: one script to read, one to write.

One command carries a whole batch (instead of thousands of small ones, each costing Python time
to pack and parse and, under load, a scheduler round trip), and the commit is a compare-and-set:
it checks, atomically with its writes, that what the fold read is still true. All keys share the partition's hash tag `{pN}`; the fixed ones are declared in KEYS, the
per-item ones (run, index, per-second keys) are built by the caller from the same tag.
"""

from __future__ import annotations

# KEYS: history ids. ARGV[1]: JSON {buckets, runs (run hash keys), digests}.
# Returns {applied flags ("0"/"1" per digest), history size, f1, v1, n1, f2, v2, n2, ...}.
LOAD = """
local q = cjson.decode(ARGV[1])
local digests = q.digests
local flags = {}
for i = 1, #digests do flags[i] = '0' end
for _, bucket in ipairs(q.buckets) do
  if #digests > 0 and redis.call('EXISTS', bucket) == 1 then
    local i = 1
    while i <= #digests do
      local j = math.min(#digests, i + 3999)
      local hits = redis.call('SMISMEMBER', bucket, unpack(digests, i, j))
      for k = 1, #hits do
        if hits[k] == 1 then flags[i + k - 1] = '1' end
      end
      i = j + 1
    end
  end
end
local out = {table.concat(flags), redis.call('ZCARD', KEYS[1])}
for _, key in ipairs(q.runs) do
  local fvn = redis.call('HMGET', key, 'f', 'v', 'n')
  out[#out + 1] = fvn[1] or ''
  out[#out + 1] = fvn[2] or ''
  out[#out + 1] = fvn[3] or '0'
end
return out
"""

# KEYS: stats, history ids, history data, history index registry, feed, outbox, marker set,
# run index registry. ARGV[1]: the write set as one JSON object (see store._write_set); every
# number in it is a string, so Lua's doubles never reformat one (1e+15).
# Returns 1 when written, 0 when a check failed (nothing written).
COMMIT = """
local w = cjson.decode(ARGV[1])
local function chunked(cmd, key, list)
  local i = 1
  while i <= #list do
    local j = math.min(#list, i + 3999)
    redis.call(cmd, key, unpack(list, i, j))
    i = j + 1
  end
end

-- compare-and-set: nothing is written if, since the caller read them, one of these events was
-- applied by someone else or one of these runs changed (their version `n` moved)
local markers = w.markers
if #markers > 0 then
  for _, bucket in ipairs(w.buckets) do
    if redis.call('EXISTS', bucket) == 1 then
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
end
for _, check in ipairs(w.versions) do
  if (redis.call('HGET', check[1], 'n') or '0') ~= check[2] then return 0 end
end

-- dedup markers
if #markers > 0 then
  chunked('SADD', KEYS[7], markers)
  redis.call('EXPIREAT', KEYS[7], w.marker_expire)
end

-- stats counters, first-event time, events per second
for _, c in ipairs(w.counters) do redis.call('HINCRBY', KEYS[1], c[1], c[2]) end
if w.since ~= '' then redis.call('HSETNX', KEYS[1], 'since', w.since) end
for _, e in ipairs(w.eps) do
  redis.call('INCRBY', e[1], e[2])
  redis.call('EXPIRE', e[1], w.eps_ttl)
end

-- history: ids and data as flat lists, then one index list per (field, value)
if #w.history_ids > 0 then
  chunked('ZADD', KEYS[2], w.history_ids)
  chunked('HSET', KEYS[3], w.history_data)
end
for _, index in ipairs(w.indexes) do
  chunked('ZADD', index[1], index[2])
  redis.call('SADD', KEYS[4], index[1])
end

-- runs: facts + view + version, expiry, index moves
for _, run in ipairs(w.runs) do
  redis.call('HSET', run[1], 'f', run[2], 'v', run[3], 'n', run[4])
  redis.call('EXPIREAT', run[1], run[5])
end
for _, index in ipairs(w.run_removes) do chunked('ZREM', index[1], index[2]) end
for _, index in ipairs(w.run_adds) do
  chunked('ZADD', index[1], index[2])
  redis.call('SADD', KEYS[8], index[1])
end
for _, child in ipairs(w.children) do
  redis.call('SADD', child[1], child[2])
  redis.call('EXPIRE', child[1], w.children_ttl)
end

-- feed entries, notification outbox
local events = 0
for _, entry in ipairs(w.feed) do
  local data = entry[2]
  if data == nil then  -- an `event` entry: the data of the next history item
    events = events + 1
    data = w.history_data[2 * events]
  end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', w.feed_max, '*', w.type_field, entry[1], w.data_field, data)
end
if #w.outbox > 0 then chunked('HSET', KEYS[6], w.outbox) end
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
