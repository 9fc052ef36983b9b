"""
The Lua scripts of the Redis backplane: each runs atomically in Redis, so
that a room's log, its roster and its presence list change together.

Keys: C{PREFIX stream:KEY} (a Redis stream of calls, each entry C{c}: the
call's JSON C{[method, args]}, C{o}: its origin; its pub/sub channel has
the same name), C{PREFIX names} (case-folded name -> holder),
C{PREFIX holder:SESSION} (the name a session holds: key, name, group,
stream, onLeave), C{PREFIX group:GROUP} (case-folded name -> name),
C{PREFIX session:SESSION} (page, state, proc), C{PREFIX proc:PROC:sessions},
C{PREFIX procs} (process -> time of its last heartbeat, in ms).
"""

#: Append one call to a stream and publish it as "SEQ ORIGIN CALL".
#: Offsets are the sequence part of ids "0-SEQ", which Redis numbers.
_APPEND = """
local function append(stream, maxlen, origin, call)
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '0-*', 'c', call, 'o', origin)
  local seq = string.match(id, '%-(%d+)$')
  redis.call('PUBLISH', stream, seq .. ' ' .. origin .. ' ' .. call)
  return seq
end

local function presenceChange(stream, maxlen, origin, method, name)
  append(stream, maxlen, origin, '[' .. method .. ',[' .. cjson.encode(name) .. ']]')
end

local function release(prefix, holder, maxlen, origin, leftMethod, announce)
  local h = prefix .. 'holder:' .. holder
  local key = redis.call('HGET', h, 'key')
  if not key then return 0 end
  local group = redis.call('HGET', h, 'group')
  local stream = redis.call('HGET', h, 'stream')
  local name = redis.call('HGET', h, 'name')
  if redis.call('HGET', prefix .. 'names', key) == holder then
    redis.call('HDEL', prefix .. 'names', key)
  end
  redis.call('HDEL', prefix .. 'group:' .. group, key)
  if announce == nil then announce = cjson.decode(redis.call('HGET', h, 'onLeave')) end
  redis.call('DEL', h)
  for _, call in ipairs(announce) do append(stream, maxlen, origin, call) end
  presenceChange(stream, maxlen, origin, leftMethod, name)
  return 1
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
#: from 1: pages would take them for calls they have seen).
FLOOR = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 0
if #last > 0 then seq = tonumber(string.match(last[1][1], '%-(%d+)$')) end
if seq < tonumber(ARGV[1]) then
  redis.pcall('XADD', KEYS[1], '0-' .. ARGV[1], 'c', '', 'o', '')
end
return seq
"""

#: KEYS: names, holder:H, group:G, stream.  ARGV: prefix, key, name, holder,
#: group, onLeave JSON, maxlen, origin, joined method JSON, left method JSON,
#: quiet ("1": no announcement, for a resync), announce call...
#: Publishes the announcement, then who left (a renamed holder's old name)
#: and who joined.  Returns 0 if someone else holds the name, 1 if held
#: now, 2 if held already.
HOLD = _APPEND + """
local owner = redis.call('HGET', KEYS[1], ARGV[2])
if owner and owner ~= ARGV[4] then return 0 end
if owner == ARGV[4] and redis.call('HGET', KEYS[2], 'name') == ARGV[3] then return 2 end
local oldKey = redis.call('HGET', KEYS[2], 'key')
local oldName = redis.call('HGET', KEYS[2], 'name')
if oldKey then
  redis.call('HDEL', KEYS[1], oldKey)
  redis.call('HDEL', ARGV[1] .. 'group:' .. redis.call('HGET', KEYS[2], 'group'), oldKey)
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[2], 'key', ARGV[2], 'name', ARGV[3], 'group', ARGV[5],
           'stream', KEYS[4], 'onLeave', ARGV[6])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
if ARGV[11] ~= '1' then
  for i = 12, #ARGV do append(KEYS[4], ARGV[7], ARGV[8], ARGV[i]) end
end
if oldName then presenceChange(KEYS[4], ARGV[7], ARGV[8], ARGV[10], oldName) end
presenceChange(KEYS[4], ARGV[7], ARGV[8], ARGV[9], ARGV[3])
return 1
"""

#: ARGV: prefix, holder, maxlen, origin, left method JSON, announce call...
#: Returns 1 if the holder held a name, else 0.
RELEASE = _APPEND + """
local announce = {}
for i = 6, #ARGV do announce[#announce + 1] = ARGV[i] end
return release(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], announce)
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
#: left method JSON.  Records this process's heartbeat, and ends the
#: sessions (and names) of processes dead for longer than the grace period.
#: Returns the ids of the sessions ended.
HEARTBEAT = _APPEND + """
local prefix, me = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], me, now)
local ended = {}
local function endSession(s)
  release(prefix, s, ARGV[5], 'reaper', ARGV[6], nil)
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
    redis.call('HDEL', KEYS[1], p)
  end
end
return ended
"""

#: ARGV: prefix, proc, maxlen, left method JSON, then the ids of this
#: process's live sessions.  Ends the sessions recorded as this process's
#: that it no longer has (they ended while Redis could not be told).
#: Returns their ids.
END_STALE = _APPEND + """
local prefix, me = ARGV[1], ARGV[2]
local live = {}
for i = 5, #ARGV do live[ARGV[i]] = true end
local set = prefix .. 'proc:' .. me .. ':sessions'
local ended = {}
for _, s in ipairs(redis.call('SMEMBERS', set)) do
  if not live[s] then
    if redis.call('HGET', prefix .. 'session:' .. s, 'proc') == me then
      release(prefix, s, ARGV[3], 'resync', ARGV[4], nil)
      redis.call('DEL', prefix .. 'session:' .. s)
      ended[#ended + 1] = s
    end
    redis.call('SREM', set, s)
  end
end
return ended
"""

#: KEYS: group:G, stream.  The group's members now, and the offset of the
#: stream's last entry: a process opening a room starts its presence list
#: from them, then applies the stream's changes after that offset.
MEMBERS = """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local seq = '0'
if #last > 0 then seq = string.match(last[1][1], '%-(%d+)$') end
return {seq, redis.call('HVALS', KEYS[1])}
"""

#: KEYS: epoch.  ARGV: a new epoch.  The epoch of what Redis keeps: set to
#: the new one if Redis has none (it is new, or restarted with nothing
#: saved), returned.
EPOCH = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""
