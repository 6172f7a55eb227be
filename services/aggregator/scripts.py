"""The Lua the partition commit runs: one script to read, one to write, one to trim history.

One command carries a whole batch (instead of thousands of small ones, each costing a round trip
or Python time), and the commit is a compare-and-set: it checks, atomically with its writes, that
what the fold read is still true. Every key a script touches shares the partition's hash tag
`{pN}`: the fixed ones are declared in KEYS, the per-item ones (marker buckets, runs, indexes,
per-second keys) are built by the caller from the same tag, so each call is one slot even on a
cluster.

Arguments travel as flat ARGV lists (count-prefixed sections), not as one encoded document:
Redis hands Lua its arguments already split, where decoding JSON cost more server time than all
the writes of a batch together. Scripts are sent by SHA (EVALSHA); a server that does not know
one (restarted, failed over, another shard) gets the text once (`Script.__call__`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from shared.redis import Client


class Script:
    """A Lua script called by SHA, with its text as the fallback: EVAL of the text both runs it
    and caches it on that server (cluster: on the shard of the keys), so the next EVALSHA hits."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, redis: Client, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.text, len(keys), *keys, *args)


# Both scripts check the batch's dedup markers against the window's bucket sets.
MARKERS = """
-- the 16-character digests concatenated in `blob`, as a list
local function digests_of(blob)
  local out = {}
  for i = 1, #blob, 16 do out[#out + 1] = string.sub(blob, i, i + 15) end
  return out
end
-- call found(k) for each digests[k] in one of the sets ARGV[first..last] (SMISMEMBER in
-- chunks: Lua's unpack has a stack limit)
local function each_applied(digests, first, last, found)
  if #digests == 0 then return end
  for b = first, last do
    if redis.call('EXISTS', ARGV[b]) == 1 then
      local i = 1
      while i <= #digests do
        local j = math.min(#digests, i + 3999)
        local hits = redis.call('SMISMEMBER', ARGV[b], unpack(digests, i, j))
        for k = 1, #hits do
          if hits[k] == 1 then found(i + k - 1) end
        end
        i = j + 1
      end
    end
  end
end
"""

# KEYS: history ids (not read: it routes the call to the partition's shard). ARGV: bucket
# count, marker bucket keys..., digests (16 characters each, concatenated), run hash keys...
# Returns {applied flags ("0"/"1" per digest), f1, v1, n1, f2, v2, n2, ...}.
LOAD = Script(
    MARKERS
    + """
local nb = tonumber(ARGV[1])
local digests, flags = digests_of(ARGV[nb + 2]), {}
for k = 1, #digests do flags[k] = '0' end
each_applied(digests, 2, nb + 1, function(k) flags[k] = '1' end)
local out = {table.concat(flags)}
for r = nb + 3, #ARGV do
  local fvn = redis.call('HMGET', ARGV[r], 'f', 'v', 'n')
  out[#out + 1] = fvn[1] or ''
  out[#out + 1] = fvn[2] or ''
  out[#out + 1] = fvn[3] or '0'
end
return out
"""
)

# KEYS: 1 stats, 2 history ids, 3 history data, 4 history index registry, 5 feed, 6 outbox,
# 7 marker set of this bucket, 8 run index registry, 9 events stream.
# ARGV: 1 group, 2 marker expire-at, 3 since ('' = none), 4 eps ttl, 5 feed maxlen, 6 run ttl,
# 7 feed type field, 8 feed data field, 9 run key prefix, 10 marker digests (16 characters
# each, concatenated); then sections, each a count and its items:
#   buckets (key) | run index keys (key) |
#   runs (id, version read, new version, first ms, facts, view, index ops, feed codes, error) |
#   acks (entry id) | counters (field, amount) | eps (key, amount) | history (member, json) |
#   indexes (key, positions) | children (key, child) | outbox (dedup id, json)
# An index's positions are 2 bytes each: which history items (1-based) it holds.
# A run's index ops are 2 bytes each: the 1-based position of a run index key, plus 32768 to
# remove the run from it (else it is added, scored by first ms). Its feed codes are one letter
# per `run.*` entry (FEED below), whose data is {"run": view}, plus "error" for run.failed.
# Every history item is also an `event` feed entry, written before the run entries, with the
# same bytes. Numbers travel as strings (Lua's doubles never reformat one).
# Returns {1, history size} when written, 0 when a check failed (nothing written).
COMMIT = Script(
    MARKERS
    + """
local FEED = {c = 'run.created', s = 'run.started', d = 'run.completed', f = 'run.failed',
  u = 'run.updated'}
local pos = 10
local function count()
  pos = pos + 1
  return tonumber(ARGV[pos])
end
-- call cmd(key, [extra,] ARGV[from..to]) in chunks (Lua's unpack has a stack limit)
local function chunked(cmd, key, extra, list, from, to)
  local i = from
  while i <= to do
    local j = math.min(to, i + 3999)
    if extra then
      redis.call(cmd, key, extra, unpack(list, i, j))
    else
      redis.call(cmd, key, unpack(list, i, j))
    end
    i = j + 1
  end
end
-- ZADD key 0 m (score 0: lexicographic order) for m = member(1) .. member(count), in calls of
-- at most 2,000 members
local function zadd0(key, count, member)
  local args, n = {}, 0
  for i = 1, count do
    args[n + 1] = '0'
    args[n + 2] = member(i)
    n = n + 2
    if n == 4000 then
      redis.call('ZADD', key, unpack(args, 1, n))
      n = 0
    end
  end
  if n > 0 then redis.call('ZADD', key, unpack(args, 1, n)) end
end

local markers = digests_of(ARGV[10])
local nb = count()
local buckets = pos + 1
pos = pos + nb
local nk = count()
local index_keys = pos + 1
pos = pos + nk
local nr = count()
local runs = pos + 1
pos = pos + 9 * nr

-- compare-and-set: nothing is written if, since the caller read them, one of these events was
-- applied by someone else or one of these runs changed (their version `n` moved)
local applied = false
each_applied(markers, buckets, buckets + nb - 1, function() applied = true end)
if applied then return 0 end
for r = runs, runs + 9 * (nr - 1), 9 do
  if (redis.call('HGET', ARGV[9] .. ARGV[r], 'n') or '0') ~= ARGV[r + 1] then return 0 end
end

-- acknowledge the entries, atomically with what they change
local na = count()
chunked('XACK', KEYS[9], ARGV[1], ARGV, pos + 1, pos + na)
pos = pos + na

-- dedup markers
if #markers > 0 then
  chunked('SADD', KEYS[7], nil, markers, 1, #markers)
  redis.call('EXPIREAT', KEYS[7], ARGV[2])
end

-- stats counters, first-event time, events per second
for _ = 1, count() do
  redis.call('HINCRBY', KEYS[1], ARGV[pos + 1], ARGV[pos + 2])
  pos = pos + 2
end
if ARGV[3] ~= '' then redis.call('HSETNX', KEYS[1], 'since', ARGV[3]) end
for _ = 1, count() do
  redis.call('INCRBY', ARGV[pos + 1], ARGV[pos + 2])
  redis.call('EXPIRE', ARGV[pos + 1], ARGV[4])
  pos = pos + 2
end

-- history: members and data, then one index per (field, value)
local nh = count()
local history = pos + 1
pos = pos + 2 * nh
if nh > 0 then
  zadd0(KEYS[2], nh, function(i) return ARGV[history + 2 * (i - 1)] end)
  chunked('HSET', KEYS[3], nil, ARGV, history, pos)
end
for _ = 1, count() do
  local key, positions = ARGV[pos + 1], ARGV[pos + 2]
  zadd0(key, #positions / 2, function(i)
    local hi, lo = string.byte(positions, 2 * i - 1, 2 * i)
    return ARGV[history + 2 * (hi * 256 + lo - 1)]
  end)
  redis.call('SADD', KEYS[4], key)
  pos = pos + 2
end

-- runs: facts + view + version, expiry when first seen (or seen earlier), index moves
local adds, removes = {}, {}
for r = runs, runs + 9 * (nr - 1), 9 do
  local key, id, first = ARGV[9] .. ARGV[r], ARGV[r], ARGV[r + 3]
  redis.call('HSET', key, 'f', ARGV[r + 4], 'v', ARGV[r + 5], 'n', ARGV[r + 2])
  local ops = ARGV[r + 6]
  for i = 1, #ops, 2 do
    local hi, lo = string.byte(ops, i, i + 1)
    local op = hi * 256 + lo
    if op >= 32768 then
      local list = removes[op - 32768] or {}
      removes[op - 32768] = list
      list[#list + 1] = id
    else
      local list = adds[op] or {}
      adds[op] = list
      list[#list + 1] = first
      list[#list + 1] = id
      if op == 1 then  -- the first key is the index of all runs: added when first seen
        redis.call('EXPIREAT', key, math.floor(tonumber(first) / 1000) + tonumber(ARGV[6]))
      end
    end
  end
end
for op, list in pairs(removes) do
  chunked('ZREM', ARGV[index_keys + op - 1], nil, list, 1, #list)
end
for op, list in pairs(adds) do
  chunked('ZADD', ARGV[index_keys + op - 1], nil, list, 1, #list)
  redis.call('SADD', KEYS[8], ARGV[index_keys + op - 1])
end
for _ = 1, count() do
  redis.call('SADD', ARGV[pos + 1], ARGV[pos + 2])
  redis.call('EXPIRE', ARGV[pos + 1], ARGV[6])
  pos = pos + 2
end

-- feed: every history item as an `event` entry, then the runs' entries; notification outbox
for k = history + 1, history + 2 * nh - 1, 2 do
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', ARGV[7], 'event', ARGV[8], ARGV[k])
end
for r = runs, runs + 9 * (nr - 1), 9 do
  local codes = ARGV[r + 7]
  for i = 1, #codes do
    local name = FEED[string.sub(codes, i, i)]
    local data
    if name == 'run.failed' then
      data = '{"run":' .. ARGV[r + 5] .. ',"error":' .. ARGV[r + 8] .. '}'
    else
      data = '{"run":' .. ARGV[r + 5] .. '}'
    end
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', ARGV[7], name, ARGV[8], data)
  end
end
local no = count()
chunked('HSET', KEYS[6], nil, ARGV, pos + 1, pos + 2 * no)
return {1, redis.call('ZCARD', KEYS[2])}
"""
)

# KEYS: history ids, history data, index registry. ARGV: entries to keep.
TRIM_HISTORY = Script("""
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
""")
