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
 * the lease (and vice versa). A fence key that is not a counter (anyone can write Redis) would make
 * INCR fail after the lease was set, wedging the token for a lease length: it is restarted from
 * ARGV[3] (the current time in ms, above any count tokend reached) and reported.
 * KEYS: lease, fence. ARGV: lease value (holder and per-attempt nonce), leaseMs, nowMs.
 * Returns {1, fence, repaired} when taken, {0, pttl, repaired, holder} when the key exists
 * (pttl -1: no expiry; holder: its value, '' when not a string, at most 200 characters).
 */
export const ACQUIRE: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local repaired = 0
local f = redis.pcall('GET', KEYS[2])
if type(f) == 'table' or (f and (#f > 15 or not string.match(f, '^%d+$'))) then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[2], ARGV[3])
  repaired = 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2]), repaired}
end
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' then v = '' end
return {0, redis.call('PTTL', KEYS[1]), repaired, string.sub(v, 1, 200)}
`,
};

/**
 * Extends the lease only if it still holds this attempt's value (holder and nonce).
 * KEYS: lease. ARGV: value, leaseMs. Returns 1 when extended, else 0.
 */
export const RENEW: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`,
};

/**
 * Deletes the lease only if it still holds this attempt's value: a holder whose lease lapsed must
 * not delete its successor's, and a lease request tokend gave up on (it timed out while Redis was
 * frozen, then ran) is deleted by its nonce. KEYS: lease. ARGV: value. Returns 1 when deleted, else 0.
 */
export const RELEASE: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
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
 * One write of a token's keys, as WRITE takes it (encoded by encodeWrite, decoded by cjson).
 * Compare-and-set: the state (and, when the access token is written, the metadata) must still be
 * what the caller read, else nothing is written ('CONFLICT'); a fenced write also needs the lease
 * value and fence unchanged ('LOST').
 */
export interface WriteOp {
  /** Fenced: the lease key's value and the fence number that must still hold. */
  readonly lease?: { readonly value: string; readonly fence: number } | undefined;
  /** What the state key held when read: a string, null for absent, undefined to not compare. */
  readonly stateWas: string | null | undefined;
  /** What the metadata key held when read (same encoding). */
  readonly metaWas: string | null | undefined;
  /** New state document; null deletes the key; undefined leaves it. */
  readonly state?: string | null | undefined;
  /** New access token and metadata with their TTL (ms, > 0); null deletes both; undefined leaves them. */
  readonly access?: { readonly token: string; readonly meta: string; readonly px: number } | null | undefined;
  /** Published on channel after the write, so other replicas reload. */
  readonly announce?: { readonly channel: string; readonly message: string } | undefined;
}

/** The one encoding of a WriteOp: a JSON object in ARGV[1] (absent fields are left out). */
export function encodeWrite(op: WriteOp): string {
  const doc: Record<string, unknown> = {};
  if (op.lease) doc.lease = op.lease.value;
  if (op.lease) doc.fence = String(op.lease.fence);
  // JSON null would decode to cjson.null (truthy in Lua): absence is its own boolean field.
  if (op.stateWas === null) doc.stateAbsent = true;
  else if (op.stateWas !== undefined) doc.stateWas = op.stateWas;
  if (op.metaWas === null) doc.metaAbsent = true;
  else if (op.metaWas !== undefined) doc.metaWas = op.metaWas;
  if (op.state === null) doc.dropState = true;
  else if (op.state !== undefined) doc.state = op.state;
  if (op.access === null) doc.dropAccess = true;
  else if (op.access !== undefined) Object.assign(doc, { access: op.access.token, meta: op.access.meta, px: String(Math.floor(op.access.px)) });
  if (op.announce) Object.assign(doc, { channel: op.announce.channel, message: op.announce.message });
  return JSON.stringify(doc);
}

/**
 * The single write path (see WriteOp). KEYS: access, meta, state, lease, fence. ARGV: encodeWrite(op).
 * Returns 'OK', 'LOST' (lease or fence changed: nothing written) or 'CONFLICT' (a value changed
 * since the caller read it: nothing written; read again and decide again).
 */
export const WRITE: ScriptDef = {
  numberOfKeys: 5,
  lua: `
local op = cjson.decode(ARGV[1])
if op.lease then
  if redis.call('GET', KEYS[4]) ~= op.lease or redis.call('GET', KEYS[5]) ~= op.fence then
    return 'LOST'
  end
end
local function same(key, absent, was)
  if absent then return redis.call('EXISTS', key) == 0 end
  if was == nil then return true end
  return redis.pcall('GET', key) == was
end
if not same(KEYS[3], op.stateAbsent, op.stateWas) or not same(KEYS[2], op.metaAbsent, op.metaWas) then
  return 'CONFLICT'
end
if op.state then
  redis.call('SET', KEYS[3], op.state)
elseif op.dropState then
  redis.call('DEL', KEYS[3])
end
if op.access then
  redis.call('SET', KEYS[1], op.access, 'PX', op.px)
  redis.call('SET', KEYS[2], op.meta, 'PX', op.px)
elseif op.dropAccess then
  redis.call('DEL', KEYS[1], KEYS[2])
end
if op.channel then
  redis.call('PUBLISH', op.channel, op.message)
end
return 'OK'
`,
};
