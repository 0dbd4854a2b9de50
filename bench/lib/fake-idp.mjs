// A fast fake OAuth2/OIDC server for the benches: discovery and client_credentials only, over
// node:http, in its own process (fork it: it reports over the IPC channel). The client secret of
// client C is `secret-C` (Basic or post). It counts what the issue asks about: discovery requests,
// token requests (per second too), peak in-flight requests and peak open connections.
//
// Options (IPC message {cmd:'start', ...} or env when run by hand):
//   latencyMs      delay before every answer (default 0)
//   ttlSec         expires_in of every token (default 3600)
//   throttleMs     for this long after the first token request, answer 429 + Retry-After
//   retryAfterSec  the Retry-After sent with those 429s (default 1)
//   tls            {key, cert} (PEM): serve https (the client needs the cert, e.g. NODE_EXTRA_CA_CERTS)
// Messages in: {cmd:'start', ...opts} -> {port}; {cmd:'stats'} -> stats; {cmd:'reset'}.
import http from 'node:http';
import https from 'node:https';

function createIdp(opts) {
  const latencyMs = opts.latencyMs ?? 0;
  const ttlSec = opts.ttlSec ?? 3600;
  const throttleMs = opts.throttleMs ?? 0;
  const retryAfterSec = opts.retryAfterSec ?? 1;
  let stats;
  let firstTokenAt;
  let seq = 0;
  const reset = () => {
    stats = { discovery: 0, token: 0, ok: 0, throttled: 0, refused: 0, other: 0, inFlight: 0, peakInFlight: 0, connections: 0, peakConnections: 0, totalConnections: 0, perSecond: {} };
    firstTokenAt = undefined;
  };
  reset();
  let base = '';

  const answer = (res, status, body, headers = {}) => {
    const send = () => {
      stats.inFlight--;
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
      res.end(text);
    };
    if (latencyMs > 0) setTimeout(send, latencyMs);
    else send();
  };

  const handler = (req, res) => {
    stats.inFlight++;
    if (stats.inFlight > stats.peakInFlight) stats.peakInFlight = stats.inFlight;
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url, base);
      if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
        stats.discovery++;
        return answer(res, 200, {
          issuer: base,
          token_endpoint: `${base}/token`,
          grant_types_supported: ['client_credentials'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
          response_types_supported: ['code'],
          subject_types_supported: ['public'],
          id_token_signing_alg_values_supported: ['RS256'],
          jwks_uri: `${base}/jwks`,
          authorization_endpoint: `${base}/auth`,
        });
      }
      if (req.method === 'POST' && url.pathname === '/token') {
        stats.token++;
        const now = Date.now();
        firstTokenAt ??= now;
        const sec = Math.floor((now - firstTokenAt) / 1000);
        stats.perSecond[sec] = (stats.perSecond[sec] ?? 0) + 1;
        if (now - firstTokenAt < throttleMs) {
          stats.throttled++;
          return answer(res, 429, { error: 'slow_down' }, { 'retry-after': String(retryAfterSec) });
        }
        const form = new URLSearchParams(Buffer.concat(chunks).toString());
        let id = form.get('client_id');
        let secret = form.get('client_secret');
        const auth = req.headers.authorization;
        if (auth?.startsWith('Basic ')) {
          const [u, p] = Buffer.from(auth.slice(6), 'base64').toString().split(':');
          id = decodeURIComponent(u);
          secret = decodeURIComponent(p ?? '');
        }
        if (form.get('grant_type') !== 'client_credentials' || !id || secret !== `secret-${id}`) {
          stats.refused++;
          return answer(res, 401, { error: 'invalid_client' });
        }
        stats.ok++;
        seq++;
        return answer(res, 200, { access_token: `at-${id}-${seq}-${'x'.repeat(600)}`, token_type: 'Bearer', expires_in: ttlSec, scope: form.get('scope') ?? undefined });
      }
      stats.other++;
      answer(res, 404, { error: 'not_found' });
    });
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, handler) : http.createServer(handler);
  server.keepAliveTimeout = 60_000;
  server.on(opts.tls ? 'secureConnection' : 'connection', (socket) => {
    stats.connections++;
    stats.totalConnections++;
    if (stats.connections > stats.peakConnections) stats.peakConnections = stats.connections;
    socket.on('close', () => stats.connections--);
  });
  return {
    listen: () =>
      new Promise((resolve) =>
        server.listen(0, '127.0.0.1', () => {
          base = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;
          resolve(server.address().port);
        }),
      ),
    stats: () => ({ ...stats, perSecond: { ...stats.perSecond } }),
    reset,
  };
}

if (process.send) {
  let idp;
  process.on('message', async (m) => {
    if (m.cmd === 'start') {
      idp = createIdp(m);
      process.send({ port: await idp.listen() });
    } else if (m.cmd === 'stats') process.send(idp.stats());
    else if (m.cmd === 'reset') {
      idp.reset();
      process.send({ ok: true });
    }
  });
  process.on('disconnect', () => process.exit(0));
}
