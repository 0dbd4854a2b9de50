/**
 * Real parts for the egress proxy tests: an upstream on node:http or node:https that records what
 * reaches it, a test CA made with openssl, tokend started in-process against the dev IdP with a
 * `proxies` section, and small clients (node:http, raw sockets) that send what fetch will not.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { parseConfig } from '../../src/config/load.js';
import { scratch } from '../support/daemon.js';
import { startFaultProxy, startDevIdp, type DevIdp, type FaultProxy } from '../support/idp.js';

// ---------------------------------------------------------------------------------------------
// The upstream.

/** One request as the upstream received it. */
export interface Seen {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: readonly string[];
  /** Lower-case name -> every value. */
  readonly headers: ReadonlyMap<string, string[]>;
  readonly bodyBytes: number;
  /** The peer certificate's subject CN under mutual TLS. */
  readonly clientCn?: string | undefined;
  /** The proxy's side of the connection: equal ports mean a reused (pooled) connection. */
  readonly remotePort?: number | undefined;
}

/** Decides the answer; `body` is the whole request body (the default handler reads it first). */
export type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen) => void;

export interface Upstream {
  /** `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`. */
  readonly url: string;
  readonly seen: Seen[];
  /** Replaces the answer for the requests that follow. Default: 200 with a small JSON body. */
  behave(b: Behaviour): void;
  /** Raw request handler for streaming tests (the body is not read first). */
  raw(h: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined): void;
  /** Upgrade handler; without one, upgrades are destroyed. */
  onUpgrade(h: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void): void;
  close(): Promise<void>;
}

export const OK: Behaviour = (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end('{"ok":true}');
};

function headerMap(raw: readonly string[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (let i = 0; i < raw.length; i += 2) {
    const k = (raw[i] as string).toLowerCase();
    m.set(k, [...(m.get(k) ?? []), raw[i + 1] as string]);
  }
  return m;
}

/** Starts an upstream on 127.0.0.1 (TLS when `tls` is given). */
export async function startUpstream(tls?: https.ServerOptions): Promise<Upstream> {
  const seen: Seen[] = [];
  let behaviour: Behaviour = OK;
  let rawHandler: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  let upgrade: ((req: http.IncomingMessage, socket: Duplex, head: Buffer) => void) | undefined;
  const sockets = new Set<net.Socket>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (rawHandler) return rawHandler(req, res);
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const cert = (req.socket as import('node:tls').TLSSocket).getPeerCertificate?.();
      const s: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        headers: headerMap(req.rawHeaders),
        bodyBytes: bytes,
        clientCn: cert && typeof cert.subject === 'object' ? (cert.subject.CN as string | undefined) : undefined,
        remotePort: req.socket.remotePort,
      };
      seen.push(s);
      behaviour(req, res, s);
    });
  };
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler);
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req, socket: Duplex, head: Buffer) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders, headers: headerMap(req.rawHeaders), bodyBytes: 0 });
    if (upgrade) upgrade(req, socket, head);
    else socket.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    seen,
    behave: (b) => void (behaviour = b),
    raw: (h) => void (rawHandler = h),
    onUpgrade: (h) => void (upgrade = h),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** The answer of an upstream that refuses every token in `refused` (RFC 6750 §3.1 invalid_token). */
export function refusing(refused: Set<string>, challenge = 'Bearer error="invalid_token"'): Behaviour {
  return (req, res, seen) => {
    const auth = seen.headers.get('authorization')?.[0] ?? '';
    if (refused.has(auth.replace(/^Bearer /, ''))) {
      res.writeHead(401, { 'WWW-Authenticate': challenge, 'Content-Type': 'application/json' });
      res.end('{"error":"invalid_token","from":"upstream"}');
    } else {
      OK(req, res, seen);
    }
  };
}

// ---------------------------------------------------------------------------------------------
// A test CA.

export interface TestPki {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: Buffer;
  readonly serverCert: Buffer;
  readonly serverKey: Buffer;
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  /** A certificate and key from another CA, which the upstream does not trust. */
  readonly strangerCertFile: string;
  readonly strangerKeyFile: string;
  cleanup(): void;
}

/** Makes a CA, a server certificate for 127.0.0.1, a client certificate (CN tokend-client) and a stranger's, with openssl. */
export function makePki(): TestPki {
  const s = scratch('tokend-pki-');
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: s.dir, stdio: 'ignore' });
  const key = (name: string): void => ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
  const ca = (name: string): void => {
    key(name);
    ssl('req', '-x509', '-new', '-key', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
  };
  const leaf = (name: string, signer: string, ext: string): void => {
    key(name);
    ssl('req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    s.file(`${name}.ext`, ext);
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  };
  ca('tokend-test-ca');
  ca('stranger-ca');
  leaf('upstream', 'tokend-test-ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('tokend-client', 'tokend-test-ca', 'extendedKeyUsage=clientAuth\n');
  leaf('stranger', 'stranger-ca', 'extendedKeyUsage=clientAuth\n');
  const read = (f: string): Buffer => readFileSync(`${s.dir}/${f}`);
  return {
    dir: s.dir,
    caFile: `${s.dir}/tokend-test-ca.crt`,
    ca: read('tokend-test-ca.crt'),
    serverCert: read('upstream.crt'),
    serverKey: read('upstream.key'),
    clientCertFile: `${s.dir}/tokend-client.crt`,
    clientKeyFile: `${s.dir}/tokend-client.key`,
    strangerCertFile: `${s.dir}/stranger.crt`,
    strangerKeyFile: `${s.dir}/stranger.key`,
    cleanup: s.cleanup,
  };
}

// ---------------------------------------------------------------------------------------------
// tokend, in-process, against the dev IdP.

export const CLIENT = { clientId: 'proxy-client', clientSecret: 'proxy-secret-value-5c1d', scope: 'api:read' };

/** The dev IdP behind a fault proxy (so a test can break the token endpoint). */
export interface Idp {
  readonly idp: DevIdp;
  readonly faults: FaultProxy;
  readonly issuer: string;
  /** client_credentials grants the IdP has issued so far. */
  grants(): number;
  close(): Promise<void>;
}

export async function startIdp(accessTokenTtlSec = 300): Promise<Idp> {
  const faults = await startFaultProxy();
  const idp = await startDevIdp({
    issuer: faults.url,
    accessTokenTtlSec,
    clients: [{ ...CLIENT, tokenEndpointAuthMethod: 'client_secret_basic' }],
  });
  faults.setTarget(idp.url);
  return {
    idp,
    faults,
    issuer: faults.url,
    grants: () => idp.stats().grants['client_credentials'] ?? 0,
    async close() {
      await faults.close();
      await idp.close();
    },
  };
}

/** Everything a test sees of a running tokend. */
export interface Tokend {
  readonly daemon: Daemon;
  /** The proxy's URL (the first one, named `orders` unless the entry says otherwise). */
  readonly proxyUrl: string;
  /** Every log line written so far, as text (for secrecy checks) and parsed. */
  logText(): string;
  events(event: string): Array<Record<string, unknown>>;
  /** The current access token (from the handle). */
  token(): string;
  stop(): Promise<void>;
}

/** The `orders` client_credentials token every proxy test configures, as YAML lines under `tokens:`. */
export function ordersTokenLines(idp: Idp, secretFile: string): string[] {
  return ['  orders:', `    issuer: ${idp.issuer}`, `    clientId: ${CLIENT.clientId}`, `    clientSecretFile: ${secretFile}`, '    grant: client_credentials'];
}

/**
 * Starts tokend in-process with token `orders` (client_credentials at the dev IdP, memory store)
 * and the given `proxies` entries (YAML lines, indented under the list), then waits for the token
 * unless `wait` is false.
 */
export async function startTokend(idp: Idp, proxiesYaml: string, opts: { secret?: string; logLevel?: string; wait?: boolean } = {}): Promise<Tokend> {
  const s = scratch('tokend-proxy-');
  const secretFile = s.file('secret', `${opts.secret ?? CLIENT.clientSecret}\n`);
  const text = [
    'listen: 127.0.0.1:0',
    `logLevel: ${opts.logLevel ?? 'debug'}`,
    'store:',
    '  type: memory',
    'tokens:',
    ...ordersTokenLines(idp, secretFile),
    `    scope: "${CLIENT.scope}"`,
    '    timeout: 2s',
    'proxies:',
    proxiesYaml,
  ].join('\n');
  const config = parseConfig(text, { env: {}, source: 'tokend.yaml' });
  let log = '';
  const lines: Array<Record<string, unknown>> = [];
  const destination = {
    write(chunk: string): void {
      log += chunk;
      for (const l of chunk.split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
    },
  };
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config, { logDestination: destination });
  } catch (err) {
    s.cleanup();
    throw err;
  }
  const handle = daemon.handles.get('orders')!;
  const t: Tokend = {
    daemon,
    proxyUrl: [...daemon.proxyUrls.values()][0] as string,
    logText: () => log,
    events: (event) => lines.filter((l) => l.event === event),
    token: () => {
      const tok = handle.current();
      if (tok === undefined) throw new Error('no current token');
      return tok.accessToken;
    },
    async stop() {
      try {
        await daemon.stop();
      } finally {
        s.cleanup();
      }
    },
  };
  if (opts.wait !== false) {
    try {
      await handle.ensureFresh(0, AbortSignal.timeout(10_000));
    } catch (err) {
      await t.stop();
      throw err;
    }
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Clients.

export interface Answer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly body: string;
}

/** One request with node:http (which sends whatever headers it is given), no connection reuse. */
export function send(base: string, path: string, opts: { method?: string; headers?: http.OutgoingHttpHeaders | string[]; body?: Buffer | string } = {}): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      // With a raw header list that names Host itself, node must not add its own.
      { host: u.hostname, port: u.port, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false, setHost: !Array.isArray(opts.headers) || !opts.headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'host') },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Sends raw bytes on a new connection and resolves with everything the server wrote before closing. */
export function rawExchange(base: string, text: string): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname);
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => (out += c));
    sock.on('error', reject);
    sock.on('close', () => resolve(out));
    sock.write(text);
  });
}

/** Status code of a raw HTTP answer. */
export function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
}

/** RFC 6455 §4.2.2: the Sec-WebSocket-Accept value for a key. */
export function websocketAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}
