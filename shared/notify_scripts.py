"""Lua for the bell's raise path (shared/notify.py): one call to read, one compare-and-set call
to write. Every bell writer bumps `NOTIFY_VERSION`; the write applies only if it has not moved
since the read, else the caller reads again."""

from __future__ import annotations

# KEYS: version, open, rows, unread, applied, ids, age. ARGV: n fingerprints, fingerprints...,
# dedup ids..., age cutoff. Returns {version, unread count, applied flags, rows count,
# aged rows (0/1), row-or-'' per fingerprint...}.
LOAD = """
local n = tonumber(ARGV[1])
local out = {redis.call('GET', KEYS[1]) or '0', redis.call('SCARD', KEYS[4])}
local flags = {}
for i = n + 2, #ARGV - 1 do
  flags[#flags + 1] = redis.call('ZSCORE', KEYS[5], ARGV[i]) and '1' or '0'
end
out[3] = table.concat(flags)
out[4] = redis.call('ZCARD', KEYS[6])
out[5] = #redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', ARGV[#ARGV], 'LIMIT', 0, 1)
for i = 2, n + 1 do
  local id = redis.call('HGET', KEYS[2], ARGV[i])
  out[#out + 1] = id and (redis.call('HGET', KEYS[3], id) or '') or ''
end
return out
"""

# KEYS: version, rows, open, ids, age, unread, applied, feed. ARGV: expected version, now,
# applied cutoff, feed maxlen, type field, data field, then count-prefixed sections: rows
# (id, fingerprint, json), newly unread ids, dedup ids, feed entries (type, data).
COMMIT = """
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
local now, pos = ARGV[2], 6
local function nxt() pos = pos + 1 return ARGV[pos] end
for i = 1, tonumber(nxt()) do
  local id, fingerprint, row = nxt(), nxt(), nxt()
  redis.call('HSET', KEYS[2], id, row)
  redis.call('HSET', KEYS[3], fingerprint, id)
  redis.call('ZADD', KEYS[4], 0, id)
  redis.call('ZADD', KEYS[5], now, id)
end
for i = 1, tonumber(nxt()) do redis.call('SADD', KEYS[6], nxt()) end
for i = 1, tonumber(nxt()) do redis.call('ZADD', KEYS[7], now, nxt()) end
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', ARGV[3])
for i = 1, tonumber(nxt()) do
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[4], '*', ARGV[5], nxt(), ARGV[6], nxt())
end
redis.call('INCR', KEYS[1])
return 1
"""
