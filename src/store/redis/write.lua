-- One change to a fleet's state, with its event and its audit record, atomically
-- (fleet-deploy §2.7). KEYS: store_id, epoch, mode, revocations, events, audit.
-- ARGV: a new store id (used only if the store has none), the operation, the change (JSON),
-- the audit record (JSON), the origin, the operation's two arguments, the audit stream's
-- MINID, the events stream's MAXLEN.
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local store = redis.call('GET', KEYS[1])
local op = ARGV[2]
if op == 'mode' then
  redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
elseif op == 'clear' then
  redis.call('DEL', KEYS[3])
elseif op == 'hset' then
  redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
elseif op == 'cutoff' then
  -- The cut-off only ever moves forward.
  local cur = redis.call('HGET', KEYS[4], 'issued_before')
  if (not cur) or (cjson.decode(cur).at_ms < tonumber(ARGV[7])) then
    redis.call('HSET', KEYS[4], 'issued_before', ARGV[6])
  end
elseif op == 'hdel' then
  redis.call('HDEL', KEYS[4], ARGV[6])
else
  return redis.error_reply('unknown operation ' .. op)
end
local epoch = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[9], '*', 'epoch', epoch, 'store', store, 'change', ARGV[3])
redis.call('XADD', KEYS[6], 'MINID', '~', ARGV[8], '*', 'origin', ARGV[5], 'seq', id, 'record', ARGV[4])
return {epoch, id, store}
