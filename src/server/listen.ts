import fs from 'node:fs/promises';
import type http from 'node:http';
import net from 'node:net';
import type { ListenAddress } from '../config/types.js';
import { TokendError } from '../errors.js';

/** The config setting a listener comes from, for error messages: `listen` or `metricsListen`. */
export type ListenField = 'listen' | 'metricsListen';

const FLAG: Record<ListenField, string> = { listen: '--listen', metricsListen: '--metrics-listen' };

/** `127.0.0.1:8477`, `[::1]:8477` or `unix:/path`, as the config spells it. */
export function describeAddress(addr: ListenAddress): string {
  if (addr.kind === 'unix') return `unix:${addr.path}`;
  return addr.host.includes(':') ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/**
 * Rewrites a listen failure so it names the setting and what to do, keeping `code` (EADDRINUSE,
 * EACCES, ...) so callers can still branch on it; the original error is the cause.
 */
export function listenError(field: ListenField, addr: ListenAddress, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const where = `${field} ${describeAddress(addr)}`;
  const change = `change ${field} or ${FLAG[field]}`;
  let message: string;
  switch (code) {
    case 'EADDRINUSE':
      message = `${where}: address already in use (EADDRINUSE); is another tokend running? ${change}`;
      break;
    case 'EACCES':
      message =
        addr.kind === 'unix'
          ? `${where}: permission denied (EACCES): the directory is not writable by this user; ${change}`
          : `${where}: permission denied (EACCES): ports below 1024 need privileges (CAP_NET_BIND_SERVICE); ${change}`;
      break;
    case 'EADDRNOTAVAIL':
      message = `${where}: address not available on this machine (EADDRNOTAVAIL); ${change}`;
      break;
    default:
      message = `${where}: ${err instanceof Error ? err.message : String(err)}`;
  }
  const out: NodeJS.ErrnoException = new Error(message, { cause: err });
  if (code !== undefined) out.code = code;
  return out;
}

function listenOn(server: http.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Starts listening. Resolves to `http://host:port` (the actual port when 0 was asked) or
 * `unix:/path`. A unix socket replaces a stale socket file, is created owner-and-group only and
 * then set to 0660. Failures are rewritten by {@link listenError}.
 */
export async function listenAt(server: http.Server, addr: ListenAddress, field: ListenField): Promise<string> {
  if (addr.kind === 'unix') {
    await removeStaleSocket(addr.path, field);
    // The socket is created with the process umask: tighten it so the socket never exists, even
    // for an instant, with more than owner and group access (chmod 0660 below makes it exact).
    const umask = process.umask(0o117);
    try {
      await listenOn(server, { path: addr.path });
    } catch (err) {
      throw listenError(field, addr, err);
    } finally {
      process.umask(umask);
    }
    try {
      // Group access lets another container's user (same fsGroup) reach a shared socket.
      await fs.chmod(addr.path, 0o660);
    } catch (err) {
      await new Promise((r) => server.close(r));
      throw err;
    }
    return `unix:${addr.path}`;
  }
  try {
    await listenOn(server, { host: addr.host, port: addr.port });
  } catch (err) {
    throw listenError(field, addr, err);
  }
  const bound = server.address() as net.AddressInfo;
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return `http://${host}:${bound.port}`;
}

/**
 * Stops accepting, ends idle keep-alive connections at once, and cuts busy ones after graceMs if
 * their answers have not ended them by then. Resolves once the server is closed.
 */
export function closeServer(server: http.Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!server.listening) return resolve();
    const grace = setTimeout(() => server.closeAllConnections(), graceMs);
    grace.unref();
    server.close(() => {
      clearTimeout(grace);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * A socket file left by a crashed tokend would make listen fail with EADDRINUSE: remove it, but
 * only if it is a socket nobody answers on (never a regular file, never a live server's socket).
 * `field` names the setting in errors.
 */
export async function removeStaleSocket(path: string, field: ListenField = 'listen'): Promise<void> {
  let stat;
  try {
    stat = await fs.lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isSocket()) {
    throw new TokendError('CONFIG_INVALID', `${field}: ${path} exists and is not a unix socket`);
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) {
    const inUse: NodeJS.ErrnoException = new Error(`unix socket ${path} is in use by another process`);
    inUse.code = 'EADDRINUSE';
    throw listenError(field, { kind: 'unix', path }, inUse);
  }
  await fs.unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
