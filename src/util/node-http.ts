/**
 * node:http, fetched with process.getBuiltinModule instead of an ES `import`. On Node 22+ the
 * ES facade of node:http reads every export once, including the lazy `WebSocket`, `CloseEvent`
 * and `MessageEvent` getters, and so loads node's whole bundled undici: ~14 MiB of RSS on
 * Node 24 for nothing tokend uses (bench/footprint.mjs, docs/performance.md). The object is the
 * same one `require('node:http')` returns. Type-only imports of node:http stay as they are.
 */
export const http: typeof import('node:http') = process.getBuiltinModule('node:http');

/**
 * node:https, taken when first needed: loading it (and with it node:tls and OpenSSL's TLS code)
 * costs ~7 MiB of RSS on Node 24 (docs/performance.md), which a configuration that speaks
 * only http:// (an in-cluster IdP behind a mesh, a loopback one) need not pay.
 */
export const https = (): typeof import('node:https') => process.getBuiltinModule('node:https');
