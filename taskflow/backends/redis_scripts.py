"""Lua scripts of the Redis backend: each call is atomic, so records and indexes never disagree.

Write scripts take ``KEYS = RedisKeys.script_keys`` (idx:all, idx:done, funcs) and start their
ARGV with ``RedisKeys.script_prefixes`` (task:, idx:status:, idx:func:, idx:sf:). Scripts read
everything first and write afterwards where they can, because Redis does not roll back a script
that fails half way: a wrong-type key then fails the call before anything changed.
"""

from __future__ import annotations

from taskflow.backends.codec import TERMINAL_VALUES
from taskflow.models import TaskStatus


def _lua_set(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"['{v}'] = true" for v in values) + "}"


def _lua_list(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{v}'" for v in values) + "}"


#: KEYS: RedisKeys.save_keys (idx:all, idx:done, funcs, owners). ARGV: the four prefixes, the
#: live-set prefix, a mode, then 6 values per record (id, status, function, sort time, owner
#: instance, JSON data). Modes: "" saves (a stored finished record is never replaced by a live
#: copy) and returns how many records were written; "claim" saves one record unless its id is
#: stored as pending, running or success, and then returns {"exists", data} instead; "force"
#: saves whatever is stored. Live records are also members of live:<owner>, whose owners are
#: members of KEYS[4].
SAVE = """
local task_p, status_p, func_p, sf_p, live_p = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local mode, FIRST, W = ARGV[6], 7, 6
local terminal = __TERMINAL__
if mode == 'claim' then
  local id = ARGV[FIRST]
  local held = redis.call('HMGET', task_p .. id, 'status', 'data')
  if held[1] == 'pending' or held[1] == 'running' or held[1] == 'success' then
    return {'exists', held[2]}
  end
  mode = 'force'
end
-- 1. Read what is stored for every id in the batch.
local old_st, old_fn, old_owner, ids = {}, {}, {}, {}
for i = FIRST, #ARGV, W do
  local id = ARGV[i]
  if old_st[id] == nil then
    local got = redis.call('HMGET', task_p .. id, 'status', 'func_name', 'owner')
    old_st[id], old_fn[id], old_owner[id] = got[1] or false, got[2], got[3]
    ids[#ids + 1] = id
  end
end
-- 2. Fold the batch in order into one final version per id (the ARGV position of its copy).
--    A finished record (stored or earlier in the batch) is never replaced by a live copy.
local final, saved = {}, 0
for i = FIRST, #ARGV, W do
  local id, st = ARGV[i], ARGV[i + 1]
  local current = final[id] and ARGV[final[id] + 1] or old_st[id]
  if mode == 'force' or not (current and terminal[current] and not terminal[st]) then
    final[id] = i
    saved = saved + 1
  end
end
-- 3. Write each final version once. Index changes are gathered per key and applied with one
--    command per key (in chunks): several times cheaper than commands per record and index.
--    Removals go first; for any one id only its final version adds anything.
local adds, add_order, zrems, srems = {}, {}, {}, {}
local function add(key, ts, id)
  local members = adds[key]
  if members == nil then
    members = {}
    adds[key] = members
    add_order[#add_order + 1] = key
  end
  local n = #members
  members[n + 1] = ts
  members[n + 2] = id
end
local function remove(into, key, id)
  local members = into[key]
  if members == nil then
    members = {}
    into[key] = members
  end
  members[#members + 1] = id
end
local known, left, lost_funcs = {}, {}, {}
for _, id in ipairs(ids) do
  local i = final[id]
  if i then
    local st, fn, ts, owner = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    local was_st, was_fn, was_owner = old_st[id], old_fn[id], old_owner[id]
    if was_st then
      if was_st ~= st then remove(zrems, status_p .. was_st, id) end
      if was_fn and (was_st ~= st or was_fn ~= fn) then
        remove(zrems, sf_p .. was_st .. ':' .. was_fn, id)
      end
      if terminal[was_st] and not terminal[st] then remove(zrems, KEYS[2], id) end
    end
    if was_fn and was_fn ~= fn then
      remove(zrems, func_p .. was_fn, id)
      lost_funcs[was_fn] = true
    end
    if was_owner and (was_owner ~= owner or terminal[st]) then
      remove(srems, live_p .. was_owner, id)
      left[was_owner] = true
    end
    redis.call('HSET', task_p .. id, 'data', ARGV[i + 5], 'status', st, 'func_name', fn,
      'sort_ts', ts, 'owner', owner)
    add(KEYS[1], ts, id)
    add(status_p .. st, ts, id)
    add(func_p .. fn, ts, id)
    add(sf_p .. st .. ':' .. fn, ts, id)
    if terminal[st] then
      add(KEYS[2], ts, id)
    else
      add(live_p .. owner, false, id)
    end
    if not known[fn] then
      redis.call('SADD', KEYS[3], fn)
      known[fn] = true
    end
  end
end
local CHUNK = 1000
for key, members in pairs(zrems) do
  for first = 1, #members, CHUNK do
    redis.call('ZREM', key, unpack(members, first, math.min(first + CHUNK - 1, #members)))
  end
end
for key, members in pairs(srems) do
  for first = 1, #members, CHUNK do
    redis.call('SREM', key, unpack(members, first, math.min(first + CHUNK - 1, #members)))
  end
end
for _, key in ipairs(add_order) do
  local members = adds[key]
  if members[1] == false then
    -- a live set: members only (every other entry is an id)
    local only = {}
    for n = 2, #members, 2 do only[#only + 1] = members[n] end
    for first = 1, #only, CHUNK do
      redis.call('SADD', key, unpack(only, first, math.min(first + CHUNK - 1, #only)))
    end
    redis.call('SADD', KEYS[4], string.sub(key, #live_p + 1))
  else
    for first = 1, #members, 2 * CHUNK do
      redis.call('ZADD', key, unpack(members, first, math.min(first + 2 * CHUNK - 1, #members)))
    end
  end
end
for fn in pairs(lost_funcs) do
  if redis.call('EXISTS', func_p .. fn) == 0 then redis.call('SREM', KEYS[3], fn) end
end
for owner in pairs(left) do
  if redis.call('SCARD', live_p .. owner) == 0 then redis.call('SREM', KEYS[4], owner) end
end
return saved
""".replace("__TERMINAL__", _lua_set(TERMINAL_VALUES))

#: KEYS[1]: the index to list. ARGV: record hash prefix, highest and lowest score ("+inf",
#: "-inf" or a number), how many, and a cursor: its score ("" for none) and task id. Returns
#: id, score, data (nil when the hash is missing) for up to that many members strictly after
#: the cursor in (score, id) descending order, all read from one snapshot.
PAGE = """
local index, task_p = KEYS[1], ARGV[1]
local high, low, want = ARGV[2], ARGV[3], tonumber(ARGV[4])
local cursor_score, cursor_id = ARGV[5], ARGV[6]
local out, n = {}, 0
local function emit(id, score)
  out[#out + 1] = id
  out[#out + 1] = score
  out[#out + 1] = redis.call('HGET', task_p .. id, 'data')
  n = n + 1
end
-- Byte order, as Redis orders members (Lua's own `<` on strings follows the server's locale).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
if cursor_score ~= '' then
  -- Members tied with the cursor's score come first, id descending: keep those after it.
  local offset = 0
  repeat
    local tied = redis.call('ZRANGE', index, cursor_score, cursor_score, 'BYSCORE', 'REV',
      'LIMIT', offset, 256)
    for _, id in ipairs(tied) do
      if n < want and before(id, cursor_id) then emit(id, cursor_score) end
    end
    offset = offset + #tied
  until #tied < 256 or n >= want
  high = '(' .. cursor_score
end
if n < want then
  local rest = redis.call('ZRANGE', index, high, low, 'BYSCORE', 'REV', 'LIMIT', 0, want - n,
    'WITHSCORES')
  for i = 1, #rest, 2 do emit(rest[i], rest[i + 1]) end
end
return out
"""

#: ARGV after the prefixes: the score finished records must be below to go ("" for no age
#: limit), how many finished records to keep ("" for no count limit) and the most to remove in
#: this call. Removes the oldest finished records first, each with every index entry naming
#: it. Returns how many it removed.
PRUNE = """
local task_p, status_p, func_p, sf_p = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local below, keep, chunk = ARGV[5], ARGV[6], tonumber(ARGV[7])
local statuses = __STATUSES__
local n = 0
if below ~= '' then n = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. below) end
if keep ~= '' then n = math.max(n, redis.call('ZCARD', KEYS[2]) - tonumber(keep)) end
n = math.min(n, chunk)
if n <= 0 then return 0 end
local ids = redis.call('ZRANGE', KEYS[2], 0, n - 1)
local funcs = {}
for i, id in ipairs(ids) do
  funcs[i] = redis.call('HGET', task_p .. id, 'func_name')
end
for i, id in ipairs(ids) do
  local fn = funcs[i]
  redis.call('DEL', task_p .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  for _, st in ipairs(statuses) do
    redis.call('ZREM', status_p .. st, id)
    if fn then redis.call('ZREM', sf_p .. st .. ':' .. fn, id) end
  end
  if fn then
    redis.call('ZREM', func_p .. fn, id)
    if redis.call('EXISTS', func_p .. fn) == 0 then redis.call('SREM', KEYS[3], fn) end
  end
end
return #ids
""".replace("__STATUSES__", _lua_list(tuple(s.value for s in TaskStatus)))

#: KEYS: live:<owner>, live:<new owner>, owners. ARGV: record hash prefix, owner, new owner,
#: most to claim ("" for all). Moves live records from one owner to the other and returns
#: id, data pairs of the records moved; members whose record is no longer live are dropped.
CLAIM_LIVE = """
local task_p, owner, new_owner = ARGV[1], ARGV[2], ARGV[3]
local limit = tonumber(ARGV[4])
local out, n = {}, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if limit and n >= limit then break end
  local got = redis.call('HMGET', task_p .. id, 'status', 'owner', 'data')
  redis.call('SREM', KEYS[1], id)
  if (got[1] == 'pending' or got[1] == 'running') and got[2] == owner then
    redis.call('HSET', task_p .. id, 'owner', new_owner)
    redis.call('SADD', KEYS[2], id)
    out[#out + 1] = id
    out[#out + 1] = got[3]
    n = n + 1
  end
end
if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], owner) end
if n > 0 then redis.call('SADD', KEYS[3], new_owner) end
return out
"""

#: KEYS: the heartbeats sorted set, the instances hash. ARGV: heartbeat time bound. Removes the
#: instances whose heartbeat is older and returns their ids (each to exactly one caller).
EXPIRE_INSTANCES = """
local ids = redis.call('ZRANGE', KEYS[1], '-inf', '(' .. ARGV[1], 'BYSCORE')
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return ids
"""
