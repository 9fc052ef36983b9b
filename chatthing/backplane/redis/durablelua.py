"""
The Lua scripts of a stream's durable point
(L{chatthing.backplane.redis.durable.DurablePoint}), each atomic in Redis.

Keys: the stream (its entries and its channel, L{chatthing.backplane.redis.lua}),
C{PREFIX durable} (stream key -> the stream's durable point: every entry
up to it was confirmed by the replicas), C{PREFIX durable:marks} (a
counter written only so that a C{WAIT} after it covers the stream's last
entry, whichever connection wrote it).

On the stream's channel, beside the entries (C{"SEQ ORIGIN CALL"}), come
C{"durable SEQ"} (the durable point moved to SEQ) and C{"void SEQ"} (the
entry SEQ was deleted: its sender was told it was not sent).
"""

#: Lua: the number of an entry id C{"0-SEQ"}.
_SEQ = """
local function seqOf(id) return tonumber(string.match(id, '%-(%d+)$')) end
local function durableOf(hash, stream) return tonumber(redis.call('HGET', hash, stream) or '0') end
"""

#: KEYS: stream, marks.  The number of the stream's last entry (0: none),
#: after a write: a C{WAIT} sent after this script on the same connection
#: confirms every entry up to that number, whoever wrote it (replication
#: is one ordered stream).
MARK = _SEQ + """
redis.call('INCR', KEYS[2])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return 0 end
return seqOf(last[1][1])
"""

#: KEYS: stream, durable.  ARGV: seq (confirmed by a C{WAIT} after its
#: L{MARK}).  Moves the durable point up to seq and says so on the
#: stream's channel; returns the durable point.
DURABLE = _SEQ + """
local point, seq = durableOf(KEYS[2], KEYS[1]), tonumber(ARGV[1])
if seq <= point then return point end
redis.call('HSET', KEYS[2], KEYS[1], seq)
redis.call('PUBLISH', KEYS[1], 'durable ' .. seq)
return seq
"""

#: KEYS: stream, durable.  ARGV: offset, count, loaded ("1" or "0").
#: What a catch-up reads: C{{durable point, last entry's number, entries}},
#: the entries after offset up to the durable point (or the last count up
#: to it, the first time).
READ = _SEQ + """
local point = durableOf(KEYS[2], KEYS[1])
local lastEntry = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local last = 0
if #lastEntry > 0 then last = seqOf(lastEntry[1][1]) end
local entries = {}
if point > tonumber(ARGV[1]) then
  if ARGV[3] == '1' then
    entries = redis.call('XRANGE', KEYS[1], '(0-' .. ARGV[1], '0-' .. point)
  else
    local newest = redis.call('XREVRANGE', KEYS[1], '0-' .. point, '-', 'COUNT', ARGV[2])
    for i = #newest, 1, -1 do entries[#entries + 1] = newest[i] end
  end
end
return {point, last, entries}
"""

#: KEYS: stream, durable.  ARGV: first, last (the numbers the publication
#: got; 0, 0: unknown, then the last "scan" entries are searched), origin,
#: mode ("check" or "void"), scan.  What became of the publication
#: C{origin}: C{{"gone", 0}} (not in the stream: it never reached this
#: primary), C{{"durable", last}} (the durable point covers it: its sender
#: is told it was sent), C{{"held", last}} (there, not yet durable); in
#: "void" mode a publication held is deleted instead and "void SEQ"
#: published for each of its entries: C{{"void", last}} (its sender is
#: told it was not sent; no one delivers it, since the durable point never
#: covered it).  All at once, so that either the durable point covers it
#: or it is gone, never both.
SETTLE = _SEQ + """
local first, last, origin = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local entries
if first == 0 then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[5])
else
  entries = redis.call('XRANGE', KEYS[1], '0-' .. first, '0-' .. last)
end
local seqs, top = {}, 0
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'o' and fields[i + 1] == origin then
      local seq = seqOf(entry[1])
      seqs[#seqs + 1] = seq
      if seq > top then top = seq end
    end
  end
end
if #seqs == 0 then return {'gone', 0} end
if durableOf(KEYS[2], KEYS[1]) >= top then return {'durable', top} end
if ARGV[4] ~= 'void' then return {'held', top} end
for _, seq in ipairs(seqs) do
  redis.call('XDEL', KEYS[1], '0-' .. seq)
  redis.call('PUBLISH', KEYS[1], 'void ' .. seq)
end
return {'void', top}
"""
