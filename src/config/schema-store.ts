/** The `store` section of the configuration: schema, relations between its fields, translation. */
import { join } from 'node:path';
import * as z from 'zod';
import { DEFAULT_FILE_MODE } from '../store/store.js';
import {
  DEFAULT_CLUSTER_PREFIX,
  DEFAULT_LEASE_MS,
  DEFAULT_REDIS_PREFIX,
  duration,
  filePath,
  hostPort,
  mode,
  nonEmpty,
  oneOf,
  present,
  redisUrl,
  relations,
  report,
  secret,
  type Ctx,
  type Obj,
} from './fields.js';
import type { StoreConfig } from './types.js';

const FILE_KEYS = ['dir', 'mode', 'stateDir'];
const REDIS_KEYS = [
  'url', 'prefix', 'password', 'passwordFile', 'encryptionKeyFile', 'sentinels', 'sentinelName', 'cluster', 'lease',
];

function checkStore(ctx: Ctx, s: Obj): void {
  const type = s['type'];
  if (type !== 'memory' && type !== 'file' && type !== 'redis') return;
  for (const k of [...FILE_KEYS, ...REDIS_KEYS]) {
    const owner = FILE_KEYS.includes(k) ? 'file' : 'redis';
    if (owner !== type && present(s, k)) report(ctx, [k], `only used with store type ${owner}`);
  }
  if (type === 'file' && !present(s, 'dir')) report(ctx, ['dir'], 'required for store type file');
  if (type === 'redis') {
    const sentinels = present(s, 'sentinels');
    const cluster = present(s, 'cluster');
    if (sentinels && cluster) report(ctx, ['cluster'], 'give sentinels or cluster, not both');
    if (!present(s, 'url') && !sentinels && !cluster) {
      report(ctx, ['url'], 'required for store type redis (unless sentinels or cluster is given)');
    }
    if (sentinels && !present(s, 'sentinelName')) report(ctx, ['sentinelName'], 'required with sentinels');
    if (!sentinels && present(s, 'sentinelName')) report(ctx, ['sentinelName'], 'only used with sentinels');
    oneOf(ctx, s, 'password', 'passwordFile', undefined);
    // One Lua script touches all of a token's keys; in a cluster they must share a hash slot.
    if (cluster && typeof s['prefix'] === 'string' && !/\{[^}]+\}/.test(s['prefix'])) {
      report(ctx, ['prefix'], 'with cluster, must contain a hash tag such as {tokend}: so a token\'s keys share a slot');
    }
  }
}

export const storeSchema = z
  .strictObject({
    type: z.enum(['memory', 'file', 'redis']).default('memory'),
    dir: filePath.optional(),
    mode: mode.optional(),
    stateDir: filePath.optional(),
    url: redisUrl.optional(),
    prefix: z.string().optional(),
    password: nonEmpty.optional(),
    passwordFile: filePath.optional(),
    encryptionKeyFile: filePath.optional(),
    sentinels: z.array(hostPort).min(1, 'expected at least one sentinel').optional(),
    sentinelName: nonEmpty.optional(),
    cluster: z.array(hostPort).min(1, 'expected at least one cluster node').optional(),
    lease: duration(1_000).optional(),
  })
  .superRefine(...relations(checkStore));


/** The store section as parsed. */
export type StoreFile = z.output<typeof storeSchema>;

export function toStore(s: StoreFile): StoreConfig {
  switch (s.type) {
    case 'memory':
      return { type: 'memory' };
    case 'file': {
      const dir = s.dir as string;
      return { type: 'file', dir, mode: s.mode ?? DEFAULT_FILE_MODE, stateDir: s.stateDir ?? join(dir, '.state') };
    }
    case 'redis':
      return {
        type: 'redis',
        // Empty when only sentinels or cluster nodes locate the server.
        url: s.url ?? '',
        // In a cluster the default carries a hash tag, so a token's keys share a slot.
        prefix: s.prefix ?? (s.cluster ? DEFAULT_CLUSTER_PREFIX : DEFAULT_REDIS_PREFIX),
        password: secret(s.password, s.passwordFile),
        encryptionKeyFile: s.encryptionKeyFile,
        sentinels: s.sentinels,
        sentinelName: s.sentinelName,
        cluster: s.cluster,
        leaseMs: s.lease ?? DEFAULT_LEASE_MS,
      };
  }
}

