/**
 * What each output format writes for a token. Pure: a token in, the file's exact bytes out, or a
 * refusal saying why the token cannot be written in that format (the reason never holds a value).
 */
import type { AccessToken } from '../token.js';
import { renderTemplate, type Template, type TemplateValues } from './template.js';

/** A format prepared for rendering: the format plus what it needs (env variable, parsed template). */
export type Renderer =
  | { readonly format: 'raw' | 'json' | 'header' }
  | { readonly format: 'env'; readonly variable: string }
  | { readonly format: 'template'; readonly template: Template };

/** renderOutput's answer. */
export type Rendered = { readonly ok: true; readonly data: string } | { readonly ok: false; readonly reason: string };

// RFC 6749 Appendix A: an access token is 1*VSCHAR; anything else cannot go in a header line.
const VSCHAR = /^[\x20-\x7e]+$/;
// RFC 9110 §11.1 auth-scheme (a token): what token_type must be to stand before the credentials.
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;
// RFC 6750 §2.1 b64token, not starting with `~` (a shell would expand it in an assignment). Every
// character of it means itself unquoted to sh, bash, systemd's EnvironmentFile and docker --env-file.
const ENV_SAFE = /^[A-Za-z0-9._+/-][A-Za-z0-9._~+/-]*=*$/;

const seconds = (ms: number): number => Math.floor(ms / 1000);

/** The token's fields as templates (and the other formats) show them; times in Unix seconds. */
export function tokenValues(name: string, token: AccessToken): TemplateValues {
  const expiresAt = seconds(token.expiresAt);
  return {
    access_token: token.accessToken,
    token_type: token.tokenType,
    expires_at: String(expiresAt),
    expires_at_rfc3339: new Date(expiresAt * 1000).toISOString().replace('.000Z', 'Z'),
    obtained_at: String(seconds(token.obtainedAt)),
    // The lifetime as granted, like the IdP's expires_in: fixed per token, so an unchanged token
    // renders the same bytes (a countdown would rewrite the file for nothing).
    expires_in: String(Math.max(0, seconds(token.expiresAt - token.obtainedAt))),
    scope: token.scope ?? '',
    name,
  };
}

/**
 * The exact content of an output file for token:
 * - raw: the access token, no newline (like the file store's DIR/NAME)
 * - json: `{"access_token","token_type","expires_at","obtained_at","scope"?}` (Unix seconds), no
 *   newline (like DIR/NAME.json, without its internal grant_key)
 * - header: `Authorization: <token_type> <token>` and a newline, for `curl -H @file`
 * - env: `VAR=token`, `VAR_TYPE=type`, `VAR_EXPIRES_AT=seconds`, one per line, unquoted; refused
 *   when a value has a character outside the RFC 6750 b64token set (it would need quoting, which
 *   env-file readers disagree about)
 * - template: the template with its placeholders filled in, verbatim
 */
export function renderOutput(renderer: Renderer, name: string, token: AccessToken): Rendered {
  const v = tokenValues(name, token);
  switch (renderer.format) {
    case 'raw':
      return { ok: true, data: v.access_token };
    case 'json': {
      const doc: Record<string, unknown> = {
        access_token: v.access_token,
        token_type: v.token_type,
        expires_at: Number(v.expires_at),
        obtained_at: Number(v.obtained_at),
      };
      if (token.scope !== undefined) doc.scope = token.scope;
      return { ok: true, data: JSON.stringify(doc) };
    }
    case 'header':
      if (!VSCHAR.test(v.access_token)) return { ok: false, reason: 'the access token has characters other than printable ASCII' };
      if (!HTTP_TOKEN.test(v.token_type)) return { ok: false, reason: 'the token type is not a valid HTTP authorization scheme' };
      return { ok: true, data: `Authorization: ${v.token_type} ${v.access_token}\n` };
    case 'env': {
      if (!ENV_SAFE.test(v.access_token)) {
        return { ok: false, reason: 'the access token has characters an env file cannot hold unquoted (RFC 6750 b64token expected)' };
      }
      if (!ENV_SAFE.test(v.token_type)) return { ok: false, reason: 'the token type has characters an env file cannot hold unquoted' };
      const n = renderer.variable;
      return { ok: true, data: `${n}=${v.access_token}\n${n}_TYPE=${v.token_type}\n${n}_EXPIRES_AT=${v.expires_at}\n` };
    }
    case 'template':
      return { ok: true, data: renderTemplate(renderer.template, v) };
  }
}

