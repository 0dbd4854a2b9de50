import { hasCode } from '../errors.js';
import type { StoredState } from '../store/store.js';
import { sha256Hex } from '../util/hash.js';

/** Another process (not holder) recorded an intent on rt and has not committed its result. */
export function inDoubt(state: StoredState, rt: string, holder: string): boolean {
  const intent = state.intent;
  return intent !== undefined && intent.holder !== holder && intent.presented === sha256Hex(rt);
}

/** Identifies one intent (holder and time), so it is reported and waited for once. */
export function intentKey(state: StoredState): string {
  return `${state.intent?.holder}|${state.intent?.at}`;
}

/**
 * True when a failed grant certainly consumed nothing: the IdP answered with an error (an HTTP
 * status), or the request was never sent (a setting or secret file unusable, an assertion file
 * expired, the IdP's limiter said wait). A timeout or a cut connection may have been processed.
 */
export function consumedNothing(err: unknown): boolean {
  if (hasCode(err, 'CONFIG_INVALID')) return true;
  if (!hasCode(err, 'GRANT_PERMANENT', 'GRANT_TRANSIENT')) return false;
  if (err.status !== undefined) return true;
  return err.reason !== undefined && /(_expired|_unavailable)$|^idp_(paused|busy)$/.test(err.reason);
}
