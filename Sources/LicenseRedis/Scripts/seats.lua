-- Seat operations of one license, run atomically by Redis (EVALSHA).
--
-- A seat is one user on one machine (user id + hardware id). Each process holding it has its own
-- handle: a session with its own id and lease. The seat is held while any of its handles is live,
-- and counts once against the license's limit however many handles it has.
--
-- KEYS[1] handles  ZSET  session id -> lease expiry (ms since epoch)
-- KEYS[2] holders  HASH  session id -> user \31 hardware id \31 idempotency key
-- KEYS[3] index    HASH  'k' \31 user \31 key -> session id (idempotent retries)
-- KEYS[4] seeded   STRING present once the license's seats were rebuilt from the durable sessions
-- KEYS[5] machines HASH  user \31 hardware id -> number of live handles (one entry per seat held)
--
-- Every key carries the license's {hash tag}, so this script runs unchanged on Redis Cluster.
-- ARGV[1] is the operation, ARGV[2] the time in ms: empty in production, so time comes from the
-- Redis server (TIME) and not from any daemon's clock; tests with an injected clock pass one.
--
-- Replies: claim -> {'GRANTED'|'EXISTING', id, expiry} | {'FULL', '', used}
--          renew -> {'RENEWED'|'RECLAIMED', id, expiry} | {'NOSEAT', '', used}
--          release -> 1 | 0;  leases -> {id, expiry, id, expiry, ...};  usage -> seats in use
--          seed -> restored handle count
--          any but release and seed, when the license has not been rebuilt yet -> {'SEED'}

local handles, holders, index, seeded, machines = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
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
  -- ARGV[3] seat limit, then five values per durable session: id, user, hw, key, expiry.
  if redis.call('EXISTS', seeded) == 1 then return 0 end
  purge()
  local limit = tonumber(ARGV[3])
  local restored = 0
  for i = 4, #ARGV - 4, 5 do
    local id, user, hw, expiry = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 4])
    if expiry > now and not redis.call('ZSCORE', handles, id) and fits(user, hw, limit) then
      insert(id, user, hw, ARGV[i + 3], expiry)
      restored = restored + 1
    end
  end
  redis.call('SET', seeded, ms(now))
  return restored
end

if op == 'release' then
  -- ARGV[3] session id. Needs no rebuild: an absent handle is simply not freed.
  purge()
  local id = ARGV[3]
  if not redis.call('ZSCORE', handles, id) then return 0 end
  drop(id)
  return 1
end

if redis.call('EXISTS', seeded) == 0 then return {'SEED'} end
purge()

if op == 'claim' then
  -- ARGV[3] session id, [4] user, [5] hardware id, [6] idempotency key, [7] seat limit, [8] lease TTL ms
  local id, user, hw, key = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local limit, expiry = tonumber(ARGV[7]), now + tonumber(ARGV[8])
  if key ~= '' then
    local existing = redis.call('HGET', index, 'k' .. SEP .. user .. SEP .. key)
    if existing and redis.call('ZSCORE', handles, existing) then
      redis.call('ZADD', handles, 'XX', ms(expiry), existing)
      return {'EXISTING', existing, expiry}
    end
  end
  local ok, used = fits(user, hw, limit)
  if not ok then return {'FULL', '', used} end
  insert(id, user, hw, key, expiry)
  return {'GRANTED', id, expiry}
end

if op == 'renew' then
  -- Same arguments as claim. A lapsed handle re-runs the limit check (unless its machine still
  -- holds the seat through another handle); it is never re-created blindly.
  local id, user, hw, key = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local limit, expiry = tonumber(ARGV[7]), now + tonumber(ARGV[8])
  if redis.call('ZSCORE', handles, id) then
    redis.call('ZADD', handles, 'XX', ms(expiry), id)
    return {'RENEWED', id, expiry}
  end
  local ok, used = fits(user, hw, limit)
  if not ok then return {'NOSEAT', '', used} end
  insert(id, user, hw, key, expiry)
  return {'RECLAIMED', id, expiry}
end

if op == 'leases' then
  return redis.call('ZRANGE', handles, 0, -1, 'WITHSCORES')
end

if op == 'usage' then
  return redis.call('HLEN', machines)
end

return redis.error_reply('ERR unknown seat operation')
