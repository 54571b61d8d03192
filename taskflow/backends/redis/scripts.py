"""Lua scripts of the Redis backend: each call is atomic, so records and indexes never disagree.

Write scripts take ``RedisKeys.script_keys`` (funcs, owners) among their KEYS and start their
ARGV with ``RedisKeys.script_prefixes`` (task:, idx:status:, idx:sf:, live:). Redis does not
roll back a script that fails half way, so the save script reads everything and checks the kind
of every key it will write before it writes anything: a key of the wrong kind (another program
writing under the prefix) fails the call with nothing changed. The other scripts read first
where they can; a wrong-type key there can fail them after part of their work.
"""

from __future__ import annotations

from taskflow.backends.codec import KEY_HOLDER_VALUES, LIVE_VALUES, TERMINAL_VALUES
from taskflow.models import TaskStatus


def _lua_set(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"['{v}'] = true" for v in values) + "}"


def _lua_list(values: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{v}'" for v in values) + "}"


#: KEYS: RedisKeys.script_keys (funcs, owners). ARGV: RedisKeys.script_prefixes (task:,
#: idx:status:, idx:sf:, live:), a mode, the tag index prefix (idx:tag:), then 7 values per
#: record (id, status, function, sort time, owner instance, JSON data, tags: one key:value per
#: line, "" for none; each tag's sorted set lists the record). Modes: "" saves (a stored
#: finished record is never replaced by a live copy, nor a record another instance took over
#: by its former owner's copy) and returns the ids refused for that; "claim" saves one record unless
#: its id is stored as pending, running or success, and then returns {"exists", data} instead;
#: "force" saves whatever is stored. Live records are also members of live:<owner>, whose
#: owners are members of KEYS[2].
SAVE = (
    """
local task_p, status_p, sf_p, live_p = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local mode, tag_p, FIRST, W = ARGV[5], ARGV[6], 7, 7
local terminal, statuses, holders = __TERMINAL__, __STATUSES__, __KEY_HOLDERS__
if mode == 'claim' then
  local id = ARGV[FIRST]
  local held = redis.call('HMGET', task_p .. id, 'status', 'data')
  if held[1] and holders[held[1]] then
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
--    A finished record (stored or earlier in the batch) is never replaced by a live copy, and
--    a record another instance took over (CLAIM_LIVE made it the owner) is not replaced by its
--    former owner's copy: that id is refused (returned). The owner '' parks a task for requeue.
local final, refused, was_refused = {}, {}, {}
for i = FIRST, #ARGV, W do
  local id, st, owner = ARGV[i], ARGV[i + 1], ARGV[i + 4]
  local current = final[id] and ARGV[final[id] + 1] or old_st[id]
  local stored_owner = old_owner[id]
  if mode ~= 'force' and stored_owner and stored_owner ~= owner and owner ~= '' then
    if not was_refused[id] then
      was_refused[id] = true
      refused[#refused + 1] = id
    end
  elseif mode == 'force' or not (current and terminal[current] and not terminal[st]) then
    final[id] = i
  end
end
-- 3. Check the kind of every key the writes touch (record hashes were read above, so they
--    are known to be hashes): Redis does not roll a script back, so a key of another kind
--    must fail the call before anything is written.
local expected = {[KEYS[1]] = 'set', [KEYS[2]] = 'set'}
for _, id in ipairs(ids) do
  local i = final[id]
  if i then
    local st, fn, owner = ARGV[i + 1], ARGV[i + 2], ARGV[i + 4]
    expected[status_p .. st] = 'zset'
    expected[sf_p .. st .. ':' .. fn] = 'zset'
    if old_st[id] then
      expected[status_p .. old_st[id]] = 'zset'
      if old_fn[id] then expected[sf_p .. old_st[id] .. ':' .. old_fn[id]] = 'zset' end
    end
    if old_owner[id] then expected[live_p .. old_owner[id]] = 'set' end
    if not terminal[st] then expected[live_p .. owner] = 'set' end
    if ARGV[i + 6] ~= '' then
      for tag in string.gmatch(ARGV[i + 6], '[^\\n]+') do expected[tag_p .. tag] = 'zset' end
    end
  end
end
for key, kind in pairs(expected) do
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= kind then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', not a ' ..
      kind .. '; nothing of this call was written')
  end
end
-- 4. Write each final version once. Index changes are gathered per key and applied with one
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
    if was_st and was_st ~= st then remove(zrems, status_p .. was_st, id) end
    if was_st and was_fn and (was_st ~= st or was_fn ~= fn) then
      remove(zrems, sf_p .. was_st .. ':' .. was_fn, id)
    end
    if was_fn and was_fn ~= fn then lost_funcs[was_fn] = true end
    if was_owner and (was_owner ~= owner or terminal[st]) then
      remove(srems, live_p .. was_owner, id)
      left[was_owner] = true
    end
    redis.call('HSET', task_p .. id, 'data', ARGV[i + 5], 'status', st, 'func_name', fn,
      'sort_ts', ts, 'owner', owner)
    if ARGV[i + 6] ~= '' then
      redis.call('HSET', task_p .. id, 'tags', ARGV[i + 6])
      for tag in string.gmatch(ARGV[i + 6], '[^\\n]+') do add(tag_p .. tag, ts, id) end
    end
    add(status_p .. st, ts, id)
    add(sf_p .. st .. ':' .. fn, ts, id)
    if not terminal[st] then add(live_p .. owner, false, id) end
    if not known[fn] then
      redis.call('SADD', KEYS[1], fn)
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
    redis.call('SADD', KEYS[2], string.sub(key, #live_p + 1))
  else
    for first = 1, #members, 2 * CHUNK do
      redis.call('ZADD', key, unpack(members, first, math.min(first + 2 * CHUNK - 1, #members)))
    end
  end
end
for fn in pairs(lost_funcs) do
  if not known[fn] then
    local used = false
    for _, st in ipairs(statuses) do
      if redis.call('EXISTS', sf_p .. st .. ':' .. fn) == 1 then used = true end
    end
    if not used then redis.call('SREM', KEYS[1], fn) end
  end
end
for owner in pairs(left) do
  if redis.call('SCARD', live_p .. owner) == 0 then redis.call('SREM', KEYS[2], owner) end
end
return refused
""".replace("__TERMINAL__", _lua_set(TERMINAL_VALUES))
    .replace("__STATUSES__", _lua_list(tuple(s.value for s in TaskStatus)))
    .replace("__KEY_HOLDERS__", _lua_set(KEY_HOLDER_VALUES))
)

#: KEYS: the indexes whose union is listed (one or more). ARGV: record hash prefix, highest and
#: lowest score ("+inf", "-inf" or a number), how many, and a cursor: its score ("" for none)
#: and task id. Returns id, score, data (nil when the hash is missing) for up to that many
#: members strictly after the cursor in (score, id) descending order, all read from one
#: snapshot. Each index gives its own first `want` members; the union's first `want` are among
#: them.
PAGE = """
local task_p = ARGV[1]
local want = tonumber(ARGV[4])
local cursor_score, cursor_id = ARGV[5], ARGV[6]
-- Byte order, as Redis orders members (Lua's own `<` on strings follows the server's locale).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local found = {}
local function take(index)
  local high, low, n = ARGV[2], ARGV[3], 0
  if cursor_score ~= '' then
    -- Members tied with the cursor's score come first, id descending: keep those after it.
    local offset = 0
    repeat
      local tied = redis.call('ZRANGE', index, cursor_score, cursor_score, 'BYSCORE', 'REV',
        'LIMIT', offset, 256)
      for _, id in ipairs(tied) do
        if n < want and before(id, cursor_id) then
          found[#found + 1] = {id, cursor_score, tonumber(cursor_score)}
          n = n + 1
        end
      end
      offset = offset + #tied
    until #tied < 256 or n >= want
    high = '(' .. cursor_score
  end
  if n < want then
    local rest = redis.call('ZRANGE', index, high, low, 'BYSCORE', 'REV', 'LIMIT', 0, want - n,
      'WITHSCORES')
    for i = 1, #rest, 2 do found[#found + 1] = {rest[i], rest[i + 1], tonumber(rest[i + 1])} end
  end
end
for _, index in ipairs(KEYS) do take(index) end
if #KEYS > 1 then
  table.sort(found, function(a, b)
    if a[3] ~= b[3] then return a[3] > b[3] end
    return before(b[1], a[1])
  end)
end
local out = {}
for i = 1, math.min(want, #found) do
  local id = found[i][1]
  out[#out + 1] = id
  out[#out + 1] = found[i][2]
  out[#out + 1] = redis.call('HGET', task_p .. id, 'data')
end
return out
"""

#: KEYS: the finished statuses' indexes, then RedisKeys.script_keys (funcs, owners). ARGV (the
#: tag index prefix last, whose sets lose the removed records too):
#: RedisKeys.script_prefixes, the score finished records must be below to go ("" for no age
#: limit), how many finished records to keep ("" for no count limit) and the most to remove in
#: this call. Removes the oldest finished records first, each with every index entry naming
#: it. Returns how many it removed.
PRUNE = """
local task_p, status_p, sf_p = ARGV[1], ARGV[2], ARGV[3]
local below, keep, chunk, tag_p = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local statuses = __STATUSES__
local done = {}
for k = 1, #KEYS - 2 do done[k] = KEYS[k] end
local funcs_key = KEYS[#KEYS - 1]
local n, total = 0, 0
for _, index in ipairs(done) do
  if below ~= '' then n = n + redis.call('ZCOUNT', index, '-inf', '(' .. below) end
  total = total + redis.call('ZCARD', index)
end
if keep ~= '' then n = math.max(n, total - tonumber(keep)) end
n = math.min(n, chunk)
if n <= 0 then return 0 end
-- The n oldest across the finished indexes: each one's n oldest, merged.
local found = {}
for _, index in ipairs(done) do
  local oldest = redis.call('ZRANGE', index, 0, n - 1, 'WITHSCORES')
  for i = 1, #oldest, 2 do found[#found + 1] = {oldest[i], tonumber(oldest[i + 1])} end
end
table.sort(found, function(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end)
local ids, fns, tags = {}, {}, {}
for i = 1, math.min(n, #found) do
  ids[i] = found[i][1]
  local got = redis.call('HMGET', task_p .. ids[i], 'func_name', 'tags')
  fns[i], tags[i] = got[1], got[2]
end
local gone = {}
for i, id in ipairs(ids) do
  local fn = fns[i]
  redis.call('DEL', task_p .. id)
  if tags[i] then
    for tag in string.gmatch(tags[i], '[^\\n]+') do redis.call('ZREM', tag_p .. tag, id) end
  end
  for _, st in ipairs(statuses) do
    redis.call('ZREM', status_p .. st, id)
    if fn then redis.call('ZREM', sf_p .. st .. ':' .. fn, id) end
  end
  if fn then gone[fn] = true end
end
for fn in pairs(gone) do
  local used = false
  for _, st in ipairs(statuses) do
    if redis.call('EXISTS', sf_p .. st .. ':' .. fn) == 1 then used = true end
  end
  if not used then redis.call('SREM', funcs_key, fn) end
end
return #ids
""".replace("__STATUSES__", _lua_list(tuple(s.value for s in TaskStatus)))

#: KEYS: the indexes of a selection (one per status: idx:status:<s>, or idx:sf:<s>:<function>),
#: then the function set. ARGV: RedisKeys.script_prefixes, the lowest and highest score ("-inf",
#: "+inf" or a number), the most to remove and the tag index prefix (idx:tag:). Removes the oldest
#: finished records of the union, each with every index entry naming it, its tags' included (a
#: member whose record is live is left alone; one whose record is missing is dropped from the
#: index). Returns {removed, members examined}.
PURGE = """
local task_p, status_p, sf_p = ARGV[1], ARGV[2], ARGV[3]
local low, high, limit, tag_p = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local terminal, statuses = __TERMINAL__, __STATUSES__
local funcs_key = KEYS[#KEYS]
local found = {}
for k = 1, #KEYS - 1 do
  local oldest = redis.call('ZRANGE', KEYS[k], low, high, 'BYSCORE', 'LIMIT', 0, limit,
    'WITHSCORES')
  for i = 1, #oldest, 2 do found[#found + 1] = {oldest[i], tonumber(oldest[i + 1]), KEYS[k]} end
end
table.sort(found, function(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  return a[1] < b[1]
end)
local removed, examined, gone = 0, 0, {}
for i = 1, math.min(limit, #found) do
  local id = found[i][1]
  examined = examined + 1
  local got = redis.call('HMGET', task_p .. id, 'status', 'func_name', 'tags')
  if not got[1] then
    redis.call('ZREM', found[i][3], id)
  elseif terminal[got[1]] then
    local fn = got[2]
    redis.call('DEL', task_p .. id)
    if got[3] then
      for tag in string.gmatch(got[3], '[^\\n]+') do redis.call('ZREM', tag_p .. tag, id) end
    end
    for _, st in ipairs(statuses) do
      redis.call('ZREM', status_p .. st, id)
      if fn then redis.call('ZREM', sf_p .. st .. ':' .. fn, id) end
    end
    if fn then gone[fn] = true end
    removed = removed + 1
  end
end
for fn in pairs(gone) do
  local used = false
  for _, st in ipairs(statuses) do
    if redis.call('EXISTS', sf_p .. st .. ':' .. fn) == 1 then used = true end
  end
  if not used then redis.call('SREM', funcs_key, fn) end
end
return {removed, examined}
""".replace("__TERMINAL__", _lua_set(TERMINAL_VALUES)).replace(
    "__STATUSES__", _lua_list(tuple(s.value for s in TaskStatus))
)

#: KEYS: live:<owner>, live:<new owner>, owners. ARGV: record hash prefix, owner, new owner,
#: most to claim ("" for all). Moves live records from one owner to the other and returns
#: id, data pairs of the records moved; members whose record is no longer live are dropped.
CLAIM_LIVE = """
local task_p, owner, new_owner = ARGV[1], ARGV[2], ARGV[3]
local limit = tonumber(ARGV[4])
local live = __LIVE__
local out, n = {}, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if limit and n >= limit then break end
  local got = redis.call('HMGET', task_p .. id, 'status', 'owner', 'data')
  redis.call('SREM', KEYS[1], id)
  if got[1] and live[got[1]] and got[2] == owner then
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
""".replace("__LIVE__", _lua_set(LIVE_VALUES))

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

#: KEYS: sched:<name>, the schedules set. ARGV: the tick (epoch seconds), the run's task id, the
#: schedule's name. Claims the tick unless the schedule is paused or a tick at or after it was
#: claimed: 1 when claimed, else 0 (so each tick goes to exactly one caller, never twice).
CLAIM_TICK = """
local got = redis.call('HMGET', KEYS[1], 'last_tick', 'paused')
if got[2] == '1' then return 0 end
if got[1] and tonumber(got[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'last_tick', ARGV[1], 'last_task_id', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""

#: KEYS: the delayed sorted set, owners. ARGV: now (epoch seconds), most to claim, record hash
#: prefix, new owner, live set prefix. Takes the due ids out of the queue and returns id, data
#: pairs of those whose record is still scheduled, now owned by the new owner (each to exactly
#: one caller). A scheduled record is in its owner's live set (it is not finished): it moves to
#: the new owner's, as a claim of live records does.
CLAIM_DUE = """
local task_p, new_owner, live_p = ARGV[3], ARGV[4], ARGV[5]
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local got = redis.call('HMGET', task_p .. id, 'status', 'data', 'owner')
  if got[1] == '__SCHEDULED__' then
    local old = got[3] or ''
    redis.call('SREM', live_p .. old, id)
    if redis.call('SCARD', live_p .. old) == 0 then redis.call('SREM', KEYS[2], old) end
    redis.call('HSET', task_p .. id, 'owner', new_owner)
    redis.call('SADD', live_p .. new_owner, id)
    redis.call('SADD', KEYS[2], new_owner)
    out[#out + 1] = id
    out[#out + 1] = got[2]
  end
end
return out
""".replace("__SCHEDULED__", TaskStatus.SCHEDULED.value)
