"""
Lua fragments for a big group's window (L{chatthing.backplane.window}, the
same rules as the memory roster's): C{PREFIX order:GROUP} is a sorted set
of the name keys C{PREFIX group:GROUP} shows, scored by when each joined
(C{PREFIX joins} counts the joins), so the window, its first C{max} names,
is computed from the state every process shares, inside the script that
changes it.  Used after L{chatthing.backplane.redis.lua._APPEND} (its
C{names}).
"""

WINDOW = """
-- key shows in group from now on, after those who joined before it (a key
-- shown already keeps its place).
local function ordered(prefix, group, key)
  redis.call('ZADD', prefix .. 'order:' .. group, 'NX', redis.call('INCR', prefix .. 'joins'), key)
end

-- key no longer shows in group.
local function unordered(prefix, group, key)
  redis.call('ZREM', prefix .. 'order:' .. group, key)
end

-- The first max names of group by join order: {key -> name}.
local function windowOf(prefix, group, max)
  local w = {}
  if max <= 0 then return w end
  local keys = redis.call('ZRANGE', prefix .. 'order:' .. group, 0, max - 1)
  if #keys == 0 then return w end
  local shown = redis.call('HMGET', prefix .. 'group:' .. group, unpack(keys))
  for i, key in ipairs(keys) do
    if shown[i] then w[key] = shown[i] end
  end
  return w
end

-- The names that came into the window and those that went out of it.
local function windowChange(before, after)
  local joined, left = {}, {}
  for key, name in pairs(after) do
    if before[key] ~= name then joined[#joined + 1] = name end
  end
  for key, name in pairs(before) do
    if after[key] ~= name then left[#left + 1] = name end
  end
  table.sort(joined)
  table.sort(left)
  return joined, left
end

-- A change past the window's size: [method, [joined, left, count]].
local function changedCount(method, joined, left, count)
  return '[' .. method .. ',[' .. names(joined) .. ',' .. names(left) .. ',' .. count .. ']]'
end
"""
