import type { StoreConfig } from '../config/types.js';
import { EVENTS, type Logger } from '../log.js';
import type { CorruptionReporter, TokenStore } from './store.js';

/**
 * Builds the store the config names. The store is not initialised yet. Only the configured
 * store's module is loaded (dynamic import): ioredis alone costs ~9 MiB of RSS and ~40 ms of
 * start-up, which a file or memory store has no use for (bench/footprint.mjs, docs/performance.md).
 */
export async function createStore(cfg: StoreConfig, logger: Logger): Promise<TokenStore> {
  const onCorrupt: CorruptionReporter = (token, what, reason) =>
    logger.error({ event: EVENTS.storeCorrupt, token, what, reason }, 'stored entry is corrupt; it will be replaced');
  switch (cfg.type) {
    case 'memory': {
      const { MemoryStore } = await import('./memory.js');
      return new MemoryStore();
    }
    case 'file': {
      const { FileStore } = await import('./file.js');
      return new FileStore({
        dir: cfg.dir,
        mode: cfg.mode,
        stateDir: cfg.stateDir,
        onCorrupt,
        onWatchFallback: (dir, reason) =>
          logger.warn({ dir, reason }, 'cannot watch the directory with inotify; polling it every 5 s instead'),
      });
    }
    case 'redis': {
      const [{ readSecret }, { loadEncryptionKey }, { RedisStore }] = await Promise.all([
        import('../config/secrets.js'),
        import('./crypto.js'),
        import('./redis/store.js'),
      ]);
      const password = cfg.password ? await readSecret(cfg.password, 'store.password') : undefined;
      const encryptionKey = cfg.encryptionKeyFile ? await loadEncryptionKey(cfg.encryptionKeyFile) : undefined;
      return new RedisStore({
        url: cfg.url,
        prefix: cfg.prefix,
        password,
        encryptionKey,
        sentinels: cfg.sentinels,
        sentinelName: cfg.sentinelName,
        cluster: cfg.cluster,
        leaseMs: cfg.leaseMs,
        logger: logger.child({ component: 'redis' }),
        onCorrupt,
      });
    }
  }
}
