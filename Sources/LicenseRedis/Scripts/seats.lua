-- Seat operations of one license, run atomically by Redis (EVALSHA).
--
-- A seat is one user on one machine (user id + hardware id). Each process holding it has its own
-- handle: a session with its own id and lease. The seat is held while any of its handles is live,
-- and counts once against the license's limit however many handles it has.
--
-- KEYS[1] handles  ZSET  session id -> lease expiry (ms since epoch)
-- KEYS[2] holders  HASH  session id -> user \31 hardware id \31 idempotency key
-- KEYS[3] index    HASH  'k' \31 user \31 key -> session id (idempotent retries)
-- KEYS[4] seeded   STRING the run id of the Redis server that rebuilt the license's seats from the
--                  durable sessions; any other value (or none) means this server's copy may be
--                  stale (a restart, a promoted replica) and the license is rebuilt first
-- KEYS[5] machines HASH  user \31 hardware id -> number of live handles (one entry per seat held)
-- KEYS[6] pending  SET   session ids of handles whose session row is not confirmed committed yet
--
-- Every key carries the license's {hash tag}, so this script runs unchanged on Redis Cluster.
--
-- ARGV[1] the operation
-- ARGV[2] the time in ms: empty in production, so time comes from the Redis server (TIME) and
--         not from any daemon's clock; tests with an injected clock pass one
-- ARGV[3] the deadline in ms (Redis time), or empty: a claim, confirm or renew that runs later
--         than this (it waited in a socket buffer while its caller gave up) changes nothing
-- ARGV[4] the run id of the Redis server the daemon's connection reached (`INFO server`, read
--         when the connection was made): it changes with every start and differs between a
--         primary and the replica promoted in its place, while the keys replicate
-- ARGV[5...] the operation's arguments
--
-- Replies: claim -> {'GRANTED'|'EXISTING'|'PENDING', id, expiry} | {'FULL', '', used}
--          confirm -> {id, expiry (0: the handle is gone), ...}
--          renew -> {'RENEWED'|'RECLAIMED', id, expiry} | {'NOSEAT', '', used}
--          release -> 1 | 0;  leases -> {id, expiry, pending (0|1), ...};  usage -> seats in use
--          seed -> restored handle count
--          claim, confirm, renew past the deadline -> {'LATE', '', now}
--          any but release and seed, when this server has not rebuilt the license -> {'SEED'}

local handles, holders, index, seeded, machines, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local op = ARGV[1]
local SEP = '\31'

local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(value)
  return string.format('%d', value)
end

local server_id = ARGV[4]

-- Removes a handle; the seat goes with its last handle.
local function drop(id)
  local holder = redis.call('HGET', holders, id)
  if holder then
    local a = string.find(holder, SEP, 1, true)
    local b = string.find(holder, SEP, a + 1, true)
    local user, key = string.sub(holder, 1, a - 1), string.sub(holder, b + 1)
    local machine = string.sub(holder, 1, b - 1)
    if redis.call('HINCRBY', machines, machine, -1) <= 0 then redis.call('HDEL', machines, machine) end
    if key ~= '' then
      local idem = 'k' .. SEP .. user .. SEP .. key
      if redis.call('HGET', index, idem) == id then redis.call('HDEL', index, idem) end
    end
    redis.call('HDEL', holders, id)
  end
  redis.call('ZREM', handles, id)
  redis.call('SREM', pending, id)
end

-- A lease lapses when its expiry is at or before now.
local function purge()
  local lapsed = redis.call('ZRANGEBYSCORE', handles, '-inf', ms(now))
  for _, id in ipairs(lapsed) do drop(id) end
end

local function insert(id, user, hw, key, expiry)
  redis.call('ZADD', handles, ms(expiry), id)
  redis.call('HSET', holders, id, user .. SEP .. hw .. SEP .. key)
  redis.call('HINCRBY', machines, user .. SEP .. hw, 1)
  if key ~= '' then redis.call('HSET', index, 'k' .. SEP .. user .. SEP .. key, id) end
end

-- Whether a new handle for user on hw fits: the machine already holds a seat, or one is free.
local function fits(user, hw, limit)
  if redis.call('HEXISTS', machines, user .. SEP .. hw) == 1 then return true, 0 end
  local used = redis.call('HLEN', machines)
  return used < limit, used
end

if op == 'seed' then
  -- ARGV[5] seat limit, then five values per durable (live) session: id, user, hw, key, expiry.
  -- Merges the durable sessions into what this server has: a confirmed handle whose session is
  -- not live is dropped (its end was lost with the old server), a live session's missing handle
  -- is restored while it fits, and handles still pending confirmation are left to confirm or lapse.
  if redis.call('GET', seeded) == server_id then return 0 end
  purge()
  local limit = tonumber(ARGV[5])
  local live = {}
  for i = 6, #ARGV - 4, 5 do live[ARGV[i]] = true end
  for _, id in ipairs(redis.call('ZRANGE', handles, 0, -1)) do
    if not live[id] and redis.call('SISMEMBER', pending, id) == 0 then drop(id) end
  end
  local restored = 0
  for i = 6, #ARGV - 4, 5 do
    local id, user, hw, expiry = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 4])
    if expiry > now and not redis.call('ZSCORE', handles, id) and fits(user, hw, limit) then
      insert(id, user, hw, ARGV[i + 3], expiry)
      restored = restored + 1
    end
  end
  redis.call('SET', seeded, server_id)
  return restored
end

if op == 'release' then
  -- ARGV[5] session id. Needs no rebuild: an absent handle is simply not freed.
  purge()
  local id = ARGV[5]
  if not redis.call('ZSCORE', handles, id) then return 0 end
  drop(id)
  return 1
end

if redis.call('GET', seeded) ~= server_id then return {'SEED'} end
if ARGV[3] ~= '' and now > tonumber(ARGV[3]) then return {'LATE', '', now} end
purge()

if op == 'claim' then
  -- ARGV[5] session id, [6] user, [7] hardware id, [8] idempotency key, [9] seat limit,
  -- [10] lease TTL ms, [11] pending TTL ms (empty: the handle is confirmed at once)
  local id, user, hw, key = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local limit, expiry = tonumber(ARGV[9]), now + tonumber(ARGV[10])
  if key ~= '' then
    local existing = redis.call('HGET', index, 'k' .. SEP .. user .. SEP .. key)
    if existing and redis.call('ZSCORE', handles, existing) then
      -- An unconfirmed handle is not extended: it lapses unless its session row commits.
      if redis.call('SISMEMBER', pending, existing) == 1 then
        return {'PENDING', existing, tonumber(redis.call('ZSCORE', handles, existing))}
      end
      redis.call('ZADD', handles, 'XX', ms(expiry), existing)
      return {'EXISTING', existing, expiry}
    end
  end
  local ok, used = fits(user, hw, limit)
  if not ok then return {'FULL', '', used} end
  if ARGV[11] ~= '' then
    insert(id, user, hw, key, now + tonumber(ARGV[11]))
    redis.call('SADD', pending, id)
  else
    insert(id, user, hw, key, expiry)
  end
  return {'GRANTED', id, expiry}
end

if op == 'confirm' then
  -- ARGV[5] lease TTL ms, ARGV[6...] session ids whose rows have committed: each handle is held
  -- for the full lease from now on. Replies {id, expiry, ...}, expiry 0 for a handle that is gone.
  local expiry = now + tonumber(ARGV[5])
  local out = {}
  for i = 6, #ARGV do
    local id = ARGV[i]
    out[#out + 1] = id
    if redis.call('ZSCORE', handles, id) then
      redis.call('SREM', pending, id)
      redis.call('ZADD', handles, 'XX', ms(expiry), id)
      out[#out + 1] = expiry
    else
      out[#out + 1] = 0
    end
  end
  return out
end

if op == 'renew' then
  -- ARGV[5] session id, [6] user, [7] hardware id, [8] idempotency key, [9] seat limit,
  -- [10] lease TTL ms. A lapsed handle re-runs the limit check (unless its machine still holds the
  -- seat through another handle); it is never re-created blindly. Only a recorded session is
  -- renewed, so a pending handle it finds is confirmed.
  local id, user, hw, key = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
  local limit, expiry = tonumber(ARGV[9]), now + tonumber(ARGV[10])
  if redis.call('ZSCORE', handles, id) then
    redis.call('SREM', pending, id)
    redis.call('ZADD', handles, 'XX', ms(expiry), id)
    return {'RENEWED', id, expiry}
  end
  local ok, used = fits(user, hw, limit)
  if not ok then return {'NOSEAT', '', used} end
  insert(id, user, hw, key, expiry)
  return {'RECLAIMED', id, expiry}
end

if op == 'leases' then
  local flat = redis.call('ZRANGE', handles, 0, -1, 'WITHSCORES')
  local out = {}
  for i = 1, #flat, 2 do
    out[#out + 1] = flat[i]
    out[#out + 1] = flat[i + 1]
    out[#out + 1] = redis.call('SISMEMBER', pending, flat[i])
  end
  return out
end

if op == 'usage' then
  return redis.call('HLEN', machines)
end

return redis.error_reply('ERR unknown seat operation')
