import type http from 'node:http';
import type { TokenHandle } from '../refresh/handle.js';
import type { AccessToken } from '../token.js';
import { CT_JSON, CT_TEXT, retryAfterSeconds, tokenUnavailableBody } from './responses.js';

/**
 * Per-token response cache: the JSON body only changes when the token or its whole seconds left
 * change, the text body only with the token. Serving a token is then a comparison and a write.
 */
export interface TokenEntry {
  readonly handle: TokenHandle;
  /** The token the cached bodies were built from. */
  token: AccessToken | undefined;
  /** The `expires_in` the cached JSON body says. */
  expiresIn: number;
  json: Buffer;
  jsonHeaders: http.OutgoingHttpHeader[];
  text: Buffer;
  textHeaders: http.OutgoingHttpHeader[];
  /** The 503 body, naming the token: built once. */
  readonly unavailableBody: Buffer;
}

/** An empty entry for a configured token. */
export function newEntry(handle: TokenHandle): TokenEntry {
  const empty = Buffer.alloc(0);
  return {
    handle,
    token: undefined,
    expiresIn: -1,
    json: empty,
    jsonHeaders: [],
    text: empty,
    textHeaders: [],
    unavailableBody: tokenUnavailableBody(handle.name),
  };
}

/** Rebuilds the cached bodies for `token` with `expiresIn` whole seconds left. */
export function refreshEntry(entry: TokenEntry, token: AccessToken, expiresIn: number): void {
  if (entry.token !== token) {
    entry.text = Buffer.from(token.accessToken);
    entry.textHeaders = ['Content-Type', CT_TEXT, 'Cache-Control', 'no-store', 'Content-Length', String(entry.text.length)];
  }
  entry.token = token;
  entry.expiresIn = expiresIn;
  entry.json = Buffer.from(
    JSON.stringify({
      access_token: token.accessToken,
      token_type: token.tokenType,
      expires_at: Math.floor(token.expiresAt / 1000),
      expires_in: expiresIn,
      scope: token.scope,
      // RFC 8693: what a token exchange issued; absent (dropped by JSON.stringify) for other grants.
      issued_token_type: token.issuedTokenType,
    }),
  );
  entry.jsonHeaders = ['Content-Type', CT_JSON, 'Cache-Control', 'no-store', 'Content-Length', String(entry.json.length)];
}

/** The 503 headers for an entry, with Retry-After from its handle (RFC 9110 §10.2.3: whole seconds, at least 1). */
export function unavailableHeaders(entry: TokenEntry): http.OutgoingHttpHeader[] {
  return [
    'Content-Type',
    CT_JSON,
    'Cache-Control',
    'no-store',
    'Retry-After',
    retryAfterSeconds(entry.handle.retryAfterMs()),
    'Content-Length',
    String(entry.unavailableBody.length),
  ];
}
