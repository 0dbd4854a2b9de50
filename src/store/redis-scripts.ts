/**
 * Lua scripts run atomically by Redis for the Redis store. Each is registered with ioredis's
 * defineCommand (EVALSHA, falling back to EVAL after a restart empties the script cache).
 *
 * Every script touches only the keys of one token (`PREFIX+NAME`, `:meta`, `:state`, `:lease`,
 * `:fence`), passed in KEYS, so in Redis Cluster they work when the prefix holds a hash tag.
 * Scripts return plain values (integers, strings, arrays without holes) so the reply looks the
 * same under RESP2 and RESP3.
 */

/** One Lua script and the number of KEYS it takes. */
export interface ScriptDef {
  readonly numberOfKeys: number;
  readonly lua: string;
  readonly readOnly?: boolean;
}

/**
 * Takes the lease and the next fence number in one step, so a fence is never handed out without
 * the lease (and vice versa).
 * KEYS: lease, fence. ARGV: holder, leaseMs.
 * Returns {1, fence} when taken, {0, pttl} when another holder has it (pttl -1: no expiry set).
 */
export const ACQUIRE: ScriptDef = {
  numberOfKeys: 2,
  lua: `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
`,
};

/**
 * Extends the lease only if this holder still has it under the same fence.
 * KEYS: lease, fence. ARGV: holder, fence, leaseMs. Returns 1 when extended, else 0.
 */
export const RENEW: ScriptDef = {
  numberOfKeys: 2,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
`,
};

/**
 * Deletes the lease only if this holder still has it under the same fence (a holder whose lease
 * lapsed must not delete its successor's).
 * KEYS: lease, fence. ARGV: holder, fence. Returns 1 when deleted, else 0.
 */
export const RELEASE: ScriptDef = {
  numberOfKeys: 2,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`,
};

/**
 * Reads a token's access, meta and state values in one atomic step, refusing oversized ones
 * (the values are untrusted: anyone with write access to Redis can put anything there).
 * KEYS: access, meta, state. ARGV: maxBytes.
 * Returns a 3-element array; each element is the value, false/nil when absent, the integer -1
 * when it is larger than maxBytes, or -2 when the key holds another type than a string.
 */
export const READ: ScriptDef = {
  numberOfKeys: 3,
  readOnly: true,
  lua: `
local out = {}
local max = tonumber(ARGV[1])
for i = 1, 3 do
  local n = redis.pcall('STRLEN', KEYS[i])
  if type(n) ~= 'number' then
    out[i] = -2
  elseif n > max then
    out[i] = -1
  else
    out[i] = redis.call('GET', KEYS[i])
  end
end
return out
`,
};

/**
 * The single write path: compare-and-set of a token's values, optionally fenced by the lease,
 * followed by a PUBLISH so other replicas learn of it at once.
 *
 * KEYS: access, meta, state, lease, fence.
 * ARGV:
 *  1 holder ('' = unfenced write)     2 fence
 *  3 write access? '1'/'0'            4 access token   5 meta JSON   6 PX (ms, > 0)
 *  7 meta expectation: '-' any, '0' absent, '1' equal to ARGV[8]
 *  9 write state? '1'/'0'            10 state JSON
 * 11 state expectation: '-', '0', '1' equal to ARGV[12]
 * 13 channel                         14 message
 * Returns 'OK', 'LOST' (lease or fence changed: nothing written) or 'CONFLICT' (a value changed
 * since the caller read it: nothing written; read again and retry).
 */
export const WRITE: ScriptDef = {
  numberOfKeys: 5,
  lua: `
local function expected(key, mode, value)
  if mode == '-' then return true end
  local cur = redis.call('GET', key)
  if mode == '0' then return cur == false end
  return cur == value
end
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[4]) ~= ARGV[1] or redis.call('GET', KEYS[5]) ~= ARGV[2] then
    return 'LOST'
  end
end
if not expected(KEYS[2], ARGV[7], ARGV[8]) or not expected(KEYS[3], ARGV[11], ARGV[12]) then
  return 'CONFLICT'
end
if ARGV[9] == '1' then
  redis.call('SET', KEYS[3], ARGV[10])
end
if ARGV[3] == '1' and tonumber(ARGV[6]) > 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[6])
  redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
end
redis.call('PUBLISH', ARGV[13], ARGV[14])
return 'OK'
`,
};

/**
 * Deletes a token's access token and metadata, replaces its state with a revocation tombstone
 * (so no replica writes back a refresh token it still holds), and announces it.
 * KEYS: access, meta, state. ARGV: channel, message, tombstone JSON. Returns the number of keys deleted.
 * The lease and fence stay: the fence must keep growing, and a lease lapses on its own.
 */
export const REMOVE: ScriptDef = {
  numberOfKeys: 3,
  lua: `
local n = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
`,
};
