import type { StoreConfig } from '../config/types.js';
import { readSecret } from '../config/secrets.js';
import { EVENTS, type Logger } from '../log.js';
import { loadEncryptionKey } from './crypto.js';
import { FileStore } from './file.js';
import { MemoryStore } from './memory.js';
import { RedisStore } from './redis/store.js';
import type { CorruptionReporter, TokenStore } from './store.js';

/** Builds the store the config names. The store is not initialised yet. */
export async function createStore(cfg: StoreConfig, logger: Logger): Promise<TokenStore> {
  const onCorrupt: CorruptionReporter = (token, what, reason) =>
    logger.error({ event: EVENTS.storeCorrupt, token, what, reason }, 'stored entry is corrupt; it will be replaced');
  switch (cfg.type) {
    case 'memory':
      return new MemoryStore();
    case 'file':
      return new FileStore({
        dir: cfg.dir,
        mode: cfg.mode,
        stateDir: cfg.stateDir,
        onCorrupt,
        onWatchFallback: (dir, reason) =>
          logger.warn({ dir, reason }, 'cannot watch the directory with inotify; polling it every 5 s instead'),
      });
    case 'redis': {
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
