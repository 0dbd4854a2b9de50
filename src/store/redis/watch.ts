import { TOKEN_NAME_RE } from '../../token.js';
import type { Logger } from '../../log.js';
import type { StoredState } from '../store.js';
import type { Client, RedisConnection } from './connection.js';
import { quit } from './connection.js';

/** Largest pub/sub message accepted, in characters: `{"name":...}` is far smaller. */
const MAX_MESSAGE_CHARS = 512;

type Watcher = (state: StoredState) => void;

/**
 * The watch role of the Redis store: one subscriber connection on `PREFIX+events`, where every
 * write publishes `{"name"}`. A message for a watched name reloads that name (one load at a time
 * per name; a message arriving meanwhile triggers one more). Every watched name is reloaded after
 * the subscription is (re)established and after the main connection reconnects: writes may have
 * been missed, and Redis may have come back empty.
 */
export class RedisWatch {
  private readonly watchers = new Map<string, Set<Watcher>>();
  private readonly loading = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private sub: Client | undefined;
  private subscribed = false;
  private closed = false;

  constructor(
    private readonly conn: RedisConnection,
    private readonly channel: string,
    private readonly load: (name: string) => Promise<StoredState>,
    private readonly logger: Logger,
  ) {
    conn.onReconnect(() => this.reloadAll());
  }

  /** See TokenStore.watch. */
  watch(name: string, onChange: (state: StoredState) => void): () => void {
    let set = this.watchers.get(name);
    if (set === undefined) this.watchers.set(name, (set = new Set()));
    const watcher: Watcher = (state) => onChange(state);
    set.add(watcher);
    // Already subscribed: this watcher starts from the current state; else the subscription does it.
    if (this.subscribed) void this.load(name).then((s) => set.has(watcher) && watcher(s), () => undefined);
    else this.subscribe();
    return () => {
      set.delete(watcher);
      if (set.size === 0 && this.watchers.get(name) === set) this.watchers.delete(name);
    };
  }

  /** Stops watching and closes the subscriber connection. */
  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
    const sub = this.sub;
    this.sub = undefined;
    if (sub) await quit(sub);
  }

  private subscribe(): void {
    if (this.closed || this.sub) return;
    const sub = this.conn.subscriber();
    this.sub = sub;
    let readyBefore = false;
    sub.on('error', () => undefined); // the main connection logs outages
    // ioredis resubscribes after a reconnect; commits published meanwhile were missed, so reload.
    sub.on('ready', () => {
      if (readyBefore) this.reloadAll();
      readyBefore = true;
    });
    sub.on('message', (channel: string, msg: string) => {
      if (channel !== this.channel) return;
      const name = parseMessage(msg);
      if (name !== undefined && this.watchers.has(name)) this.reload(name);
    });
    // The subscriber queues commands while disconnected, so this fails only when it is closed.
    sub.subscribe(this.channel).then(
      () => {
        this.subscribed = true;
        this.reloadAll();
      },
      (err: unknown) => this.logger.debug({ error: this.conn.toStoreError(err, 'subscribe', undefined) }, 'subscribe failed'),
    );
  }

  private reloadAll(): void {
    for (const name of this.watchers.keys()) this.reload(name);
  }

  private reload(name: string): void {
    if (this.closed) return;
    if (this.loading.has(name)) {
      this.again.add(name);
      return;
    }
    const p = this.load(name)
      .then((state) => {
        for (const cb of [...(this.watchers.get(name) ?? [])]) {
          try {
            cb(state);
          } catch (err) {
            this.logger.error({ token: name, error: err }, 'watch callback failed');
          }
        }
      })
      .catch((err: unknown) => this.logger.debug({ token: name, error: err }, 'could not load a changed token'))
      .finally(() => {
        if (this.loading.get(name) === p) this.loading.delete(name);
        if (this.again.delete(name)) this.reload(name);
      });
    this.loading.set(name, p);
  }
}

/** The pub/sub message announcing a write of name. */
export function announcement(name: string): string {
  return JSON.stringify({ name });
}

/** The token name a pub/sub message announces; undefined for anything malformed. */
export function parseMessage(msg: unknown): string | undefined {
  if (typeof msg !== 'string' || msg.length === 0 || msg.length > MAX_MESSAGE_CHARS) return undefined;
  if (TOKEN_NAME_RE.test(msg)) return msg;
  try {
    const doc = JSON.parse(msg) as { name?: unknown };
    return typeof doc?.name === 'string' && TOKEN_NAME_RE.test(doc.name) ? doc.name : undefined;
  } catch {
    return undefined;
  }
}
