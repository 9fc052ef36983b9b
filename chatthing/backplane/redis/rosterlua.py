"""
The roster's Lua scripts (L{chatthing.backplane.redis.RedisRoster}): names
held and let go of, and each group's list changed with the batches
published on its stream.  The keys are described in
L{chatthing.backplane.redis.lua}, whose fragments these use.
"""

from .lua import _APPEND
from .windowlua import WINDOW

#: Lua: C{late(deadline)}, whether Redis's clock (C{TIME}, in ms) is past
#: C{deadline} (0: none).  A script sent to a paused Redis runs when it
#: wakes, after its sender was told it failed: past its deadline it must
#: change nothing (as L{chatthing.backplane.redis.lua.PUBLISH}).
_LATE = """
local function late(deadline)
  deadline = tonumber(deadline)
  if not deadline or deadline <= 0 then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline
end
"""

#: KEYS: names, holder:H, group:G, stream.  ARGV: key, name, holder, group,
#: onLeave JSON, resync ("1": the name is shown in the group already, as
#: it was before Redis lost it), what to publish for many leaving at once
#: ("[method, text, above]" JSON, or "": see C{lua._REAP}), prefix, proc,
#: deadline (ms on Redis's clock, or 0: see C{_LATE}).
#: Holds the name, letting go of the holder's old one (which, if its group
#: shows it, is recorded as leaving, for the reaper should proc die before
#: its batch tells of the rename); publishes nothing: who joined is
#: published with the room's next batch (L{CHANGES}).  Returns 0 if
#: someone else holds the name, 1 if held now, 2 if held already; an
#: error starting "LATE" past the deadline.
HOLD = _APPEND + WINDOW + _LATE + """
if late(ARGV[10]) then return redis.error_reply('LATE the login came after its deadline') end
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[3] then return 0 end
if owner == ARGV[3] and redis.call('HGET', KEYS[2], 'name') == ARGV[2] then return 2 end
local old = letGo(ARGV[8], ARGV[3])
if old then leaving(ARGV[8], ARGV[9], old) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], 'key', ARGV[1], 'name', ARGV[2], 'group', ARGV[4],
           'stream', KEYS[4], 'onLeave', ARGV[5], 'many', ARGV[7])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
  ordered(ARGV[8], ARGV[4], ARGV[1])
end
return 1
"""

#: ARGV: prefix, holder, proc, deadline (as L{HOLD}'s).  Lets go of the
#: holder's name (recorded as leaving until proc's batch tells of it);
#: publishes nothing.  Returns 1 if the holder held a name, else 0; an
#: error starting "LATE" past the deadline.
RELEASE = _APPEND + _LATE + """
if late(ARGV[4]) then return redis.error_reply('LATE the leave came after its deadline') end
local record = letGo(ARGV[1], ARGV[2])
if not record then return 0 end
leaving(ARGV[1], ARGV[3], record)
return 1
"""

#: KEYS: group:G, stream.  ARGV: prefix, group, maxlen, origin, changed
#: method JSON, proc, the window's size (0: none), the number of calls, the
#: calls..., the number of names that joined, then (key, name) for each
#: that joined, then for each that left.  Publishes the calls and one
#: change with who joined and who left, and changes the group's list to
#: match, together (so a process that reads the list and the stream's
#: offset at once, L{MEMBERS}, is never a batch off); those that left are
#: no longer proc's to tell of.  A name that left which someone holds in
#: the group under exactly that name again (they came back through another
#: process) is left out.  Past the window's size the change is the
#: window's, with the count (nothing, if neither changed and there are no
#: calls), as L{chatthing.backplane.memory.MemoryRoster.publishChanges}.
CHANGES = _APPEND + WINDOW + """
local prefix, group, maxlen, origin, method = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local pending = prefix .. 'proc:' .. ARGV[6] .. ':leaving'
local max = tonumber(ARGV[7])
local countBefore = redis.call('HLEN', KEYS[1])
local before = windowOf(prefix, group, max)
local i = 8
local calls = {}
for _ = 1, tonumber(ARGV[i]) do i = i + 1; calls[#calls + 1] = ARGV[i] end
i = i + 1
local joinedCount = tonumber(ARGV[i])
i = i + 1
local joined, left = {}, {}
for _ = 1, joinedCount do
  joined[#joined + 1] = {ARGV[i], ARGV[i + 1]}
  i = i + 2
end
for j = i, #ARGV - 1, 2 do
  local key, name = ARGV[j], ARGV[j + 1]
  redis.call('HDEL', pending, group .. ' ' .. key)
  if not heldThere(prefix, key, name, group) then
    if redis.call('HGET', KEYS[1], key) == name then
      redis.call('HDEL', KEYS[1], key)
      unordered(prefix, group, key)
    end
    left[#left + 1] = name
  end
end
local joinedNames = {}
for _, pair in ipairs(joined) do
  redis.call('HSET', KEYS[1], pair[1], pair[2])
  ordered(prefix, group, pair[1])
  joinedNames[#joinedNames + 1] = pair[2]
end
local count = redis.call('HLEN', KEYS[1])
if max > 0 and math.max(count, countBefore) > max then
  joinedNames, left = windowChange(before, windowOf(prefix, group, max))
  if #calls == 0 and #joinedNames == 0 and #left == 0 and count == countBefore then return 1 end
end
for _, call in ipairs(calls) do append(KEYS[2], maxlen, origin, call) end
if max > 0 and count > max then
  append(KEYS[2], maxlen, origin, changedCount(method, joinedNames, left, count))
else
  append(KEYS[2], maxlen, origin, changed(method, joinedNames, left))
end
return 1
"""

#: KEYS: group:G, stream.  ARGV: prefix, group, the window's size (0:
#: none).  The offset of the stream's last entry and the group's members
#: now (past the window's size, the window, and how many members there are):
#: a process opening a room starts its presence list from them, then
#: applies the stream's changes after that offset.
MEMBERS = _APPEND + WINDOW + """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local seq = '0'
if #last > 0 then seq = string.match(last[1][1], '%-(%d+)$') end
local count = redis.call('HLEN', KEYS[1])
local max = tonumber(ARGV[3])
if max == 0 or count <= max then return {seq, redis.call('HVALS', KEYS[1])} end
local shown = {}
for _, name in pairs(windowOf(ARGV[1], ARGV[2], max)) do shown[#shown + 1] = name end
return {seq, shown, count}
"""

#: KEYS: group:G.  ARGV: a name's key.  The name the group shows under
#: that key, or false.
LOOKUP = """
return redis.call('HGET', KEYS[1], ARGV[1])
"""
