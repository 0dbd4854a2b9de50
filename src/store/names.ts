import { TokendError } from '../errors.js';
import { TOKEN_NAME_RE } from '../token.js';

/**
 * Asserts that name is a valid token name (TOKEN_NAME_RE) before it becomes a file name or a Redis
 * key. The config schema already refuses other names, so this only catches a caller's bug: it
 * throws TokendError('CONFIG_INVALID'), which no caller retries. The message quotes at most 64
 * characters of the name (a name is not a secret, but it is bounded like any untrusted text).
 */
export function assertTokenName(name: string, where: string): void {
  if (typeof name !== 'string' || !TOKEN_NAME_RE.test(name)) {
    const shown = JSON.stringify(String(name).slice(0, 64));
    throw new TokendError('CONFIG_INVALID', `${where}: token name ${shown} is not valid (${TOKEN_NAME_RE.source})`);
  }
}
