/**
 * HTTP notifications: a POST of `{"token":NAME,"expires_at":SECONDS,"event":"token.changed"}` to a
 * loopback URL (the schema refuses any other). Never the token. Redirects are not followed.
 */
import type { HttpNotifyConfig } from '../config/schema-output.js';
import { linkSignals } from '../util/abort.js';
import { CHANGE_EVENT, type ChangeEvent, type Notifier, type NotifyOutcome, type RetryPolicy } from './notifier.js';

/**
 * Retries of an HTTP notification: at most 6 attempts within 60 s, 0.5 s to 10 s apart (with
 * jitter). Enough to ride out an application restarting; a newer change replaces an older one
 * still retrying.
 */
export const HTTP_RETRY: RetryPolicy = { maxAttempts: 6, maxTotalMs: 60_000, minMs: 500, maxMs: 10_000 };

/** The fetch an HTTP notifier uses (injected in tests). */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

function failureCode(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'error';
}

/** An HTTP notifier for cfg; retry defaults to HTTP_RETRY. */
export function httpNotifier(cfg: HttpNotifyConfig, opts: { fetch?: FetchLike; retry?: RetryPolicy } = {}): Notifier {
  const doFetch = opts.fetch ?? ((url, init) => fetch(url, init));
  const u = new URL(cfg.url);
  // The query may carry a receiver's shared secret: logs show origin and path only.
  const target = { url: `${u.origin}${u.pathname}` };
  return {
    kind: 'http',
    target,
    retry: opts.retry ?? HTTP_RETRY,
    async send(event: ChangeEvent, signal: AbortSignal): Promise<NotifyOutcome> {
      const body = JSON.stringify({ token: event.name, expires_at: event.expiresAt, event: CHANGE_EVENT });
      const timeout = AbortSignal.timeout(cfg.timeoutMs);
      const linked = linkSignals(signal, timeout);
      try {
        const res = await doFetch(cfg.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'tokend' },
          body,
          redirect: 'manual',
          signal: linked.signal,
        });
        await res.body?.cancel().catch(() => undefined);
        const status = res.status;
        if (status >= 200 && status < 300) return { ok: true, detail: { status } };
        if (status >= 300 && status < 400) return { ok: false, reason: `answered HTTP ${status} (redirects are not followed)`, retryable: false, detail: { status } };
        // 5xx, 408 and 429 are the receiver's passing trouble; any other 4xx will not change.
        const retryable = status >= 500 || status === 408 || status === 429;
        return { ok: false, reason: `answered HTTP ${status}`, retryable, detail: { status } };
      } catch (err) {
        if (signal.aborted) return { ok: false, reason: 'stopped before an answer came', retryable: false };
        if (timeout.aborted) return { ok: false, reason: `no answer within ${cfg.timeoutMs} ms`, retryable: true };
        return { ok: false, reason: `request failed (${failureCode(err)})`, retryable: true };
      } finally {
        linked.dispose();
      }
    },
  };
}
