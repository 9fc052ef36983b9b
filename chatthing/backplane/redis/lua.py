"""
The Lua scripts of the Redis backplane: each runs atomically in Redis, so
that a room's log, its roster and its presence list change together.

Keys: C{PREFIX stream:KEY} (a Redis stream of calls, each entry C{c}: the
call's JSON C{[method, args]}, C{o}: its origin; its pub/sub channel has
the same name), C{PREFIX names} (case-folded name -> holder),
C{PREFIX holder:SESSION} (the name a session holds: key, name, group,
stream, onLeave, many), C{PREFIX group:GROUP} (name key -> name: who the
group shows, changed only with the batches published on its stream,
L{chatthing.backplane.redis.rosterlua.CHANGES}),
C{PREFIX order:GROUP} and C{PREFIX joins} (its join order:
L{chatthing.backplane.redis.windowlua}),
C{PREFIX session:SESSION} (page, state, proc), C{PREFIX proc:PROC:sessions},
C{PREFIX proc:PROC:leaving} ("GROUP KEY" -> the holder record, JSON, of
a name the process let go of while its group still shows it: its batch
has not told of the leave yet), C{PREFIX procs} (process -> time of its
last heartbeat, in ms).

The roster's own scripts are in L{chatthing.backplane.redis.rosterlua}.
"""

from .windowlua import WINDOW

#: Append one call to a stream and publish it as "SEQ ORIGIN CALL".
#: Offsets are the sequence part of ids "0-SEQ", which Redis numbers.
_APPEND = """
local function append(stream, maxlen, origin, call)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '0-*', 'c', call, 'o', origin)
  local seq = string.match(id, '%-(%d+)$')
  redis.call('PUBLISH', stream, seq .. ' ' .. origin .. ' ' .. call)
  return seq
end

-- A JSON array of names (cjson makes {} of an empty table).
local function names(list)
  if #list == 0 then return '[]' end
  return cjson.encode(list)
end

-- One batch of presence changes: [method, [joined, left]].
local function changed(method, joined, left)
  return '[' .. method .. ',[' .. names(joined) .. ',' .. names(left) .. ']]'
end

-- Lets go of a holder's name; its record {key, name, group, stream,
-- onLeave, many}, or nil if it held none.
local function letGo(prefix, holder)
  local h = prefix .. 'holder:' .. holder
  local record = redis.call('HMGET', h, 'key', 'name', 'group', 'stream', 'onLeave', 'many')
  if not record[1] then return nil end
  if redis.call('HGET', prefix .. 'names', record[1]) == holder then
    redis.call('HDEL', prefix .. 'names', record[1])
  end
  redis.call('DEL', h)
  return record
end

-- Whether someone holds exactly name (by its key) in group now.
local function heldThere(prefix, key, name, group)
  local holder = redis.call('HGET', prefix .. 'names', key)
  if not holder then return false end
  local held = redis.call('HMGET', prefix .. 'holder:' .. holder, 'name', 'group')
  return held[1] == name and held[2] == group
end

-- proc let go of the name of record, which its group still shows: until
-- proc's batch tells of the leave, the reaper tells of it if proc dies.
local function leaving(prefix, proc, record)
  if redis.call('HGET', prefix .. 'group:' .. record[3], record[1]) == record[2] then
    redis.call('HSET', prefix .. 'proc:' .. proc .. ':leaving', record[3] .. ' ' .. record[1],
               cjson.encode(record))
  end
end
"""

#: Ending the sessions of a dead process: each name shown in its group
#: leaves, and each group is told in one batch (the holders' onLeave calls,
#: or one call for all of them if more than "above" left and the holders
#: were given "many": [method, text, above], text's {first}, {second} and
#: {others} filled in; then one change with every name that left, or,
#: past reapMax names, with the changes to the group's window and its count).
_REAP = _APPEND + WINDOW + """
local reaped, reapedOrder, reapMax = {}, {}, 0
local function reapRecord(prefix, record)
  local group = prefix .. 'group:' .. record[3]
  if redis.call('HGET', group, record[1]) ~= record[2] then return end
  if heldThere(prefix, record[1], record[2], record[3]) then return end
  local batch = reaped[record[4]]
  if not batch then
    batch = {names = {}, calls = {}, many = record[6], group = group,
             before = windowOf(prefix, record[3], reapMax), countBefore = redis.call('HLEN', group),
             prefix = prefix, name = record[3]}
    reaped[record[4]] = batch
    reapedOrder[#reapedOrder + 1] = record[4]
  end
  redis.call('HDEL', group, record[1])
  unordered(prefix, record[3], record[1])
  batch.names[#batch.names + 1] = record[2]
  for _, call in ipairs(cjson.decode(record[5])) do batch.calls[#batch.calls + 1] = call end
end
local function reap(prefix, holder)
  local record = letGo(prefix, holder)
  if record then reapRecord(prefix, record) end
end
-- The names a dead process let go of whose leave it had not published.
local function reapLeaving(prefix, proc)
  local key = prefix .. 'proc:' .. proc .. ':leaving'
  local all = redis.call('HGETALL', key)
  for i = 2, #all, 2 do reapRecord(prefix, cjson.decode(all[i])) end
  redis.call('DEL', key)
end
local function publishReaped(maxlen, origin, method)
  for _, stream in ipairs(reapedOrder) do
    local batch = reaped[stream]
    table.sort(batch.names)
    local many = nil
    if batch.many and batch.many ~= '' then many = cjson.decode(batch.many) end
    if many and #batch.names > tonumber(many[3]) then
      local values = {first = batch.names[1], second = batch.names[2],
                      others = tostring(#batch.names - 2)}
      local text = string.gsub(many[2], '{(%a+)}', function(k) return values[k] end)
      append(stream, maxlen, origin, cjson.encode({many[1], {text}}))
    else
      for _, call in ipairs(batch.calls) do append(stream, maxlen, origin, call) end
    end
    local count = redis.call('HLEN', batch.group)
    if reapMax > 0 and math.max(count, batch.countBefore) > reapMax then
      local joined, left = windowChange(batch.before, windowOf(batch.prefix, batch.name, reapMax))
      if count > reapMax then
        append(stream, maxlen, origin, changedCount(method, joined, left, count))
      else
        append(stream, maxlen, origin, changed(method, joined, left))
      end
    else
      append(stream, maxlen, origin, changed(method, {}, batch.names))
    end
  end
end
"""

#: KEYS: stream, dedupe key or "".  ARGV: maxlen, origin, seconds the
#: dedupe key is kept, deadline (ms on Redis's clock, 0: none), call...
#: Returns the offsets, or false if the dedupe key was there already (the
#: same call of a page ran before, on a process that died).  Past its
#: deadline it publishes nothing and answers the error C{LATE}: the sender
#: was told by then that the call was not sent (a script buffered in the
#: socket of a Redis that was paused runs when it wakes up).
PUBLISH = _APPEND + """
local deadline = tonumber(ARGV[4])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then
    return redis.error_reply('LATE the publication came after its deadline')
  end
end
if KEYS[2] ~= '' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return false end
end
local seqs = {}
for i = 5, #ARGV do seqs[#seqs + 1] = append(KEYS[1], ARGV[1], ARGV[2], ARGV[i]) end
return seqs
"""

#: KEYS: stream.  ARGV: offset.  Makes the stream's next offset come after
#: the given one (a Redis that restarted empty must not number calls again
#: from 1: pages would take them for calls they have seen).  The offset is
#: the caller's own, with no margin past it: a jump in the numbering that a
#: process kept no frames of is a gap no page can be resumed across
#: (L{chatthing.backplane.redis.backplane.RedisBackplane._resync}).
FLOOR = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 0
if #last > 0 then seq = tonumber(string.match(last[1][1], '%-(%d+)$')) end
if seq < tonumber(ARGV[1]) then
  redis.pcall('XADD', KEYS[1], '0-' .. ARGV[1], 'c', '', 'o', '')
end
return seq
"""

#: KEYS: session:S, proc:P:sessions.  ARGV: page, state JSON, proc.
#: Records a session as this process's (unless another has taken it).
SAVE_SESSION = """
local proc = redis.call('HGET', KEYS[1], 'proc')
if proc and proc ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'page', ARGV[1], 'state', ARGV[2], 'proc', ARGV[3])
redis.call('SADD', KEYS[2], string.match(KEYS[1], 'session:(.*)$'))
return 1
"""

#: KEYS: session:S, proc:P:sessions.  ARGV: proc.  The session has ended.
FORGET_SESSION = """
if redis.call('HGET', KEYS[1], 'proc') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], string.match(KEYS[1], 'session:(.*)$'))
return 1
"""

#: KEYS: session:S, procs.  ARGV: prefix, proc, deadAfter ms.  Takes the
#: session over for this process; tells its old process, if alive, to let
#: go.  Returns {page, state} or false.
ADOPT_SESSION = """
local record = redis.call('HMGET', KEYS[1], 'page', 'state', 'proc')
if not record[1] then return false end
local ident = string.match(KEYS[1], 'session:(.*)$')
local old = record[3]
if old ~= ARGV[2] then
  redis.call('SREM', ARGV[1] .. 'proc:' .. old .. ':sessions', ident)
  redis.call('SADD', ARGV[1] .. 'proc:' .. ARGV[2] .. ':sessions', ident)
  redis.call('HSET', KEYS[1], 'proc', ARGV[2])
  local beat = redis.call('HGET', KEYS[2], old)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if beat and now - tonumber(beat) <= tonumber(ARGV[3]) then
    redis.call('PUBLISH', ARGV[1] .. 'handoff:' .. old, ident)
  end
end
return {record[1], record[2]}
"""

#: KEYS: procs.  ARGV: prefix, proc, deadAfter ms, grace ms, maxlen,
#: changed method JSON, the window's size (0: none).  Records this process's heartbeat, and ends the
#: sessions (and names) of processes dead for longer than the grace period,
#: one batch per group for all of them.  Returns the ids of the sessions
#: ended.
HEARTBEAT = _REAP + """
local prefix, me = ARGV[1], ARGV[2]
reapMax = tonumber(ARGV[7]) or 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], me, now)
local ended = {}
local function endSession(s)
  reap(prefix, s)
  redis.call('DEL', prefix .. 'session:' .. s)
  ended[#ended + 1] = s
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local p, beat = all[i], tonumber(all[i + 1])
  if p ~= me and now - beat > tonumber(ARGV[3]) + tonumber(ARGV[4]) then
    local set = prefix .. 'proc:' .. p .. ':sessions'
    for _, s in ipairs(redis.call('SMEMBERS', set)) do endSession(s) end
    redis.call('DEL', set)
    reapLeaving(prefix, p)
    redis.call('HDEL', KEYS[1], p)
  end
end
publishReaped(ARGV[5], 'reaper', ARGV[6])
return ended
"""

#: ARGV: prefix, proc, maxlen, changed method JSON, the window's size (0:
#: none), then the ids of this
#: process's live sessions.  Ends the sessions recorded as this process's
#: that it no longer has (they ended while Redis could not be told), one
#: batch per group.  Returns their ids.
END_STALE = _REAP + """
local prefix, me = ARGV[1], ARGV[2]
reapMax = tonumber(ARGV[5]) or 0
local live = {}
for i = 6, #ARGV do live[ARGV[i]] = true end
local set = prefix .. 'proc:' .. me .. ':sessions'
local ended = {}
for _, s in ipairs(redis.call('SMEMBERS', set)) do
  if not live[s] then
    if redis.call('HGET', prefix .. 'session:' .. s, 'proc') == me then
      reap(prefix, s)
      redis.call('DEL', prefix .. 'session:' .. s)
      ended[#ended + 1] = s
    end
    redis.call('SREM', set, s)
  end
end
publishReaped(ARGV[3], 'resync', ARGV[4])
return ended
"""

#: KEYS: epoch.  ARGV: a new epoch.  The epoch of what Redis keeps: set to
#: the new one if Redis has none (it is new, or restarted with nothing
#: saved), returned.
EPOCH = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""
