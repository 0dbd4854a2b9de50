/**
 * The connection side of one egress proxy: a keep-alive agent for its upstream (TLS with an
 * optional CA and client certificate), connect and response timeouts, and the one place upstream
 * errors are classified into the answers the application gets.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import https from 'node:https';
import net, { isIP } from 'node:net';
import tls from 'node:tls';
import type { ProxyConfig } from '../config/types.js';
import { errnoCode, TokendError } from '../errors.js';
import { basePathPrefix } from './target.js';
import { http as nodeHttp } from '../util/node-http.js';

/**
 * Options of the keep-alive agent for an upstream with this response timeout (ms). Idle pooled
 * connections are kept as long as the response timeout, or less when the upstream announces a
 * shorter `Keep-Alive: timeout=` (node closes a second before it); one the upstream closes anyway
 * is retried on a fresh connection (exchange.ts). The same value as the requests' timeout, so node
 * re-arms no socket timer per request.
 */
export function agentOptions(timeoutMs: number): http.AgentOptions {
  return { keepAlive: true, scheduling: 'lifo', timeout: timeoutMs };
}

/** Everything needed to send a request to one upstream, resolved once at start-up. */
export interface Upstream {
  readonly tls: boolean;
  readonly agent: http.Agent;
  /** https.request or http.request (the latter ignores the TLS options). */
  readonly request: (options: https.RequestOptions) => http.ClientRequest;
  /** Host to connect to (IPv6 without brackets). */
  readonly hostname: string;
  readonly port: number;
  /** The Host header the upstream gets: its URL's authority (host and non-default port). */
  readonly hostHeader: string;
  /** TLS server name (SNI and certificate check); undefined for an IP address. */
  readonly servername: string | undefined;
  /** The base path every request target is appended to ('' for `/`). */
  readonly prefix: string;
  /** Longest silence from the upstream (ms); also how long idle pooled connections are kept. */
  readonly timeoutMs: number;
}

async function readPem(cfg: ProxyConfig, key: 'caFile' | 'certFile' | 'keyFile'): Promise<Buffer | undefined> {
  const path = cfg[key];
  if (path === undefined) return undefined;
  try {
    return await readFile(path);
  } catch (err) {
    const code = errnoCode(err);
    throw new TokendError('CONFIG_INVALID', `proxies (${cfg.name}).${key}: cannot read ${path} (${code})`, { cause: err });
  }
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** Every certificate in a PEM file must parse, and there must be one (OpenSSL skips what it cannot read). */
function checkCertificates(cfg: ProxyConfig, key: 'caFile' | 'certFile', pem: Buffer): void {
  const blocks = pem.toString('latin1').match(PEM_CERT_RE) ?? [];
  try {
    if (blocks.length === 0) throw new Error('no certificate');
    for (const b of blocks) new X509Certificate(b);
  } catch (err) {
    throw new TokendError('CONFIG_INVALID', `proxies (${cfg.name}).${key}: ${cfg[key]} does not hold PEM certificates`, { cause: err });
  }
}

/**
 * Resolves the upstream of one proxy: reads its CA and client certificate files (refusing ones
 * that do not parse, at start-up rather than at the first request) and creates its agent.
 */
export async function createUpstream(cfg: ProxyConfig): Promise<Upstream> {
  const url = new URL(cfg.upstream);
  const isTls = url.protocol === 'https:';
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const common = agentOptions(cfg.timeoutMs);
  let agent: http.Agent;
  if (isTls) {
    const [ca, cert, key] = await Promise.all([readPem(cfg, 'caFile'), readPem(cfg, 'certFile'), readPem(cfg, 'keyFile')]);
    if (ca) checkCertificates(cfg, 'caFile', ca);
    if (cert) checkCertificates(cfg, 'certFile', cert);
    if (key) {
      try {
        createPrivateKey(key);
      } catch (err) {
        throw new TokendError('CONFIG_INVALID', `proxies (${cfg.name}).keyFile: ${cfg.keyFile} is not a PEM private key`, { cause: err });
      }
    }
    const options = { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
    try {
      tls.createSecureContext(options);
    } catch (err) {
      // OpenSSL's message says what failed (a key that does not match the certificate), never the content.
      throw new TokendError('CONFIG_INVALID', `proxies (${cfg.name}): certFile and keyFile cannot be used together: ${(err as Error).message}`, { cause: err });
    }
    agent = new https.Agent({ ...common, ...options });
  } else {
    agent = new nodeHttp.Agent(common);
  }
  limitConnect(agent, cfg.connectTimeoutMs, isTls);
  return {
    tls: isTls,
    agent,
    request: isTls ? https.request : nodeHttp.request,
    hostname,
    port: url.port === '' ? (isTls ? 443 : 80) : Number(url.port),
    hostHeader: url.host,
    servername: isTls && isIP(hostname) === 0 ? hostname : undefined,
    prefix: basePathPrefix(url),
    timeoutMs: cfg.timeoutMs,
  };
}

/** A timeout the proxy imposed: while connecting, or while waiting on the upstream. */
export class UpstreamTimeout extends Error {
  readonly code = 'UPSTREAM_TIMEOUT';
  constructor(readonly phase: 'connect' | 'response') {
    super(phase === 'connect' ? 'connecting to the upstream timed out' : 'the upstream did not answer in time');
    this.name = 'UpstreamTimeout';
  }
}

/**
 * Bounds the connection phase of every new socket of the agent: connected (and the TLS handshake
 * done) within ms, else destroyed with UpstreamTimeout('connect'), which the request it was made
 * for reports. Pooled sockets cost nothing per request.
 */
function limitConnect(agent: http.Agent, ms: number, isTls: boolean): void {
  type Create = (...args: unknown[]) => net.Socket;
  const a = agent as unknown as { createConnection: Create };
  const create = a.createConnection.bind(agent);
  a.createConnection = (...args) => {
    const socket = create(...args);
    const timer = setTimeout(() => socket.destroy(new UpstreamTimeout('connect')), ms);
    const done = (): void => clearTimeout(timer);
    socket.once(isTls ? 'secureConnect' : 'connect', done);
    socket.once('close', done);
    return socket;
  };
}

/** How an upstream request failed, as the application is told. */
export type UpstreamFailure = 'unreachable' | 'tls' | 'failed' | 'connect_timeout' | 'timeout';

const UNREACHABLE: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
]);

/** The one classification of upstream errors (table-tested in proxy-units.test.ts). */
export function classifyUpstreamError(err: unknown): UpstreamFailure {
  if (err instanceof UpstreamTimeout) return err.phase === 'connect' ? 'connect_timeout' : 'timeout';
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return 'failed';
  if (UNREACHABLE.has(code)) return 'unreachable';
  if (code === 'ETIMEDOUT') return 'connect_timeout';
  if (/CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_/.test(code)) return 'tls';
  return 'failed';
}
