-- Seat operations of one license, run atomically by Redis (EVALSHA).
--
-- KEYS[1] seats   ZSET  session id -> lease expiry (ms since epoch)
-- KEYS[2] holders HASH  session id -> user \31 hardware id \31 idempotency key
-- KEYS[3] index   HASH  'k' \31 user \31 key -> session id;  'm' \31 user \31 hardware -> session id
-- KEYS[4] seeded  STRING present once the license's seats were rebuilt from the durable sessions
--
-- Every key carries the license's {hash tag}, so this script runs unchanged on Redis Cluster.
-- ARGV[1] is the operation, ARGV[2] the time in ms: empty in production, so time comes from the
-- Redis server (TIME) and not from any daemon's clock; tests with an injected clock pass one.
--
-- Replies: claim -> {'GRANTED'|'EXISTING', id, expiry} | {'FULL', used}
--          renew -> {'RENEWED'|'RECLAIMED', id, expiry} | {'NOSEAT', used}
--          release -> 1 | 0;  leases -> {id, expiry, id, expiry, ...};  seed -> restored count
--          any but release and seed, when the license has not been rebuilt yet -> {'SEED'}

local seats, holders, index, seeded = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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

local function unindex(id)
  local holder = redis.call('HGET', holders, id)
  if not holder then return end
  local a = string.find(holder, SEP, 1, true)
  local b = string.find(holder, SEP, a + 1, true)
  local user, hw, key = string.sub(holder, 1, a - 1), string.sub(holder, a + 1, b - 1), string.sub(holder, b + 1)
  local machine = 'm' .. SEP .. user .. SEP .. hw
  if redis.call('HGET', index, machine) == id then redis.call('HDEL', index, machine) end
  if key ~= '' then
    local idem = 'k' .. SEP .. user .. SEP .. key
    if redis.call('HGET', index, idem) == id then redis.call('HDEL', index, idem) end
  end
  redis.call('HDEL', holders, id)
end

-- A lease lapses when its expiry is at or before now.
local function purge()
  local lapsed = redis.call('ZRANGEBYSCORE', seats, '-inf', ms(now))
  if #lapsed == 0 then return end
  for _, id in ipairs(lapsed) do unindex(id) end
  redis.call('ZREMRANGEBYSCORE', seats, '-inf', ms(now))
end

local function insert(id, user, hw, key, expiry)
  redis.call('ZADD', seats, ms(expiry), id)
  redis.call('HSET', holders, id, user .. SEP .. hw .. SEP .. key)
  redis.call('HSET', index, 'm' .. SEP .. user .. SEP .. hw, id)
  if key ~= '' then redis.call('HSET', index, 'k' .. SEP .. user .. SEP .. key, id) end
end

if op == 'seed' then
  -- ARGV[3] seat limit, then five values per durable session: id, user, hw, key, expiry.
  if redis.call('EXISTS', seeded) == 1 then return 0 end
  purge()
  local limit = tonumber(ARGV[3])
  local restored = 0
  for i = 4, #ARGV - 4, 5 do
    local id, expiry = ARGV[i], tonumber(ARGV[i + 4])
    if expiry > now and redis.call('ZCARD', seats) < limit and not redis.call('ZSCORE', seats, id) then
      insert(id, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], expiry)
      restored = restored + 1
    end
  end
  redis.call('SET', seeded, ms(now))
  return restored
end

if op == 'release' then
  -- ARGV[3] session id. Needs no rebuild: an absent seat is simply not freed.
  purge()
  local id = ARGV[3]
  if not redis.call('ZSCORE', seats, id) then return 0 end
  unindex(id)
  redis.call('ZREM', seats, id)
  return 1
end

if redis.call('EXISTS', seeded) == 0 then return {'SEED'} end
purge()

if op == 'claim' then
  -- ARGV[3] session id, [4] user, [5] hardware id, [6] idempotency key, [7] seat limit, [8] lease TTL ms
  local id, user, hw, key = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local limit, expiry = tonumber(ARGV[7]), now + tonumber(ARGV[8])
  local existing = false
  if key ~= '' then existing = redis.call('HGET', index, 'k' .. SEP .. user .. SEP .. key) end
  if not existing then existing = redis.call('HGET', index, 'm' .. SEP .. user .. SEP .. hw) end
  if existing and redis.call('ZSCORE', seats, existing) then
    redis.call('ZADD', seats, 'XX', ms(expiry), existing)
    return {'EXISTING', existing, expiry}
  end
  local used = redis.call('ZCARD', seats)
  if used >= limit then return {'FULL', '', used} end
  insert(id, user, hw, key, expiry)
  return {'GRANTED', id, expiry}
end

if op == 'renew' then
  -- Same arguments as claim. A lapsed lease re-runs the limit check; it is never re-created blindly.
  local id, user, hw, key = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
  local limit, expiry = tonumber(ARGV[7]), now + tonumber(ARGV[8])
  if redis.call('ZSCORE', seats, id) then
    redis.call('ZADD', seats, 'XX', ms(expiry), id)
    return {'RENEWED', id, expiry}
  end
  local used = redis.call('ZCARD', seats)
  if used >= limit then return {'NOSEAT', '', used} end
  insert(id, user, hw, key, expiry)
  return {'RECLAIMED', id, expiry}
end

if op == 'leases' then
  return redis.call('ZRANGE', seats, 0, -1, 'WITHSCORES')
end

return redis.error_reply('ERR unknown seat operation')
