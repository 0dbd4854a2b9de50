import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { onFreePort, redisServerArgs, spawnRedis, waitExit } from '../../dev/redis.js';
import { until } from './until.js';

/** A redis-server child process started by a test (which must call stop()). */
export interface RedisHandle {
  /** `redis://127.0.0.1:PORT/0` */
  readonly url: string;
  readonly port: number;
  /** SIGTERM, waits for exit, closes clients made by client(), removes the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL (a crash: no persistence is configured, so the data is gone), waits for exit. */
  kill9(): Promise<void>;
  /** Starts the server again on the same port (empty, like a failover to an empty replica). */
  restart(): Promise<void>;
  flushall(): Promise<void>;
  /** A plain ioredis client for inspecting keys; closed by stop(). */
  client(): Redis;
  /** SIGSTOP: the server keeps its connections open but answers nothing (a hung Redis). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

/** Options of startRedis. */
export interface StartRedisOptions {
  /** Sets `requirepass`; url() stays without it, client() and flushall() use it. */
  readonly password?: string;
  /**
   * A one-node Redis Cluster owning all 16384 slots (enough to exercise ioredis's Cluster client:
   * MOVED handling aside, the protocol and the same-slot rule for scripts are the same). The node
   * announces 127.0.0.1: alone, it never learns its own address from a peer.
   */
  readonly cluster?: boolean;
}

/**
 * Starts a private, empty redis-server (no persistence, loopback only) on a free port in a temp
 * directory. Requires `redis-server` on PATH.
 */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisHandle> {
  const password = opts.password;
  const dir = await mkdtemp(join(tmpdir(), 'tokend-redis-'));
  const extra = [
    ...(password ? ['--requirepass', password] : []),
    ...(opts.cluster ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-announce-ip', '127.0.0.1'] : []),
  ];
  let proc: ChildProcess | undefined;
  let port = 0;
  try {
    [proc, port] = await onFreePort(async (p) => [await spawnRedis(redisServerArgs(p, dir, extra), p, dir), p] as const);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  if (opts.cluster) await assignAllSlots(port, password);
  const clients: Redis[] = [];
  const url = `redis://127.0.0.1:${port}/0`;

  const kill = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc;
    if (!p) return;
    proc = undefined;
    p.kill('SIGCONT'); // a paused server cannot act on SIGTERM
    p.kill(signal);
    await waitExit(p);
  };

  return {
    url,
    port,
    async stop() {
      for (const c of clients) c.disconnect();
      await kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
    kill9: () => kill('SIGKILL'),
    async restart() {
      await kill('SIGTERM');
      // redis-server sets SO_REUSEADDR, so the same port can be bound again at once.
      proc = await spawnRedis(redisServerArgs(port, dir, extra), port, dir);
    },
    async flushall() {
      const c = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, password });
      c.on('error', () => undefined);
      try {
        await c.flushall();
      } finally {
        c.disconnect();
      }
    },
    client() {
      const c = new Redis(url, { maxRetriesPerRequest: 1, password });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    pause() {
      proc?.kill('SIGSTOP');
    },
    resume() {
      proc?.kill('SIGCONT');
    },
  };
}

/** Makes a fresh cluster node own every slot and waits for cluster_state:ok. */
async function assignAllSlots(port: number, password: string | undefined): Promise<void> {
  const c = new Redis({ host: '127.0.0.1', port, password, maxRetriesPerRequest: 0 });
  c.on('error', () => undefined);
  try {
    await c.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    await until(async () => String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 'the one-node cluster to be ok', 5_000, 20);
  } finally {
    c.disconnect();
  }
}

/** A Redis Sentinel process monitoring one master. */
export interface SentinelHandle {
  readonly port: number;
  /** The master group name (`mymaster`). */
  readonly name: string;
  stop(): Promise<void>;
}

/** Starts `redis-server --sentinel` on a free port, monitoring master (quorum 1). */
export async function startSentinel(master: RedisHandle, name = 'mymaster'): Promise<SentinelHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'tokend-sentinel-'));
  try {
    return await onFreePort(async (port) => {
      // Sentinel rewrites its config file, so it must be a writable file of its own.
      const conf = join(dir, 'sentinel.conf');
      await writeFile(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${master.port} 1`,
          `sentinel down-after-milliseconds ${name} 60000`,
          '',
        ].join('\n'),
      );
      const proc = await spawnRedis([conf, '--sentinel'], port, dir);
      return {
        port,
        name,
        async stop() {
          proc.kill('SIGTERM');
          await waitExit(proc);
          await rm(dir, { recursive: true, force: true });
        },
      };
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
