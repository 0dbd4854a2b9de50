/**
 * Ports for servers that are stopped and started again on the same port (a restarted
 * redis-server, a fault proxy that stops listening to refuse connections). A port the OS picks
 * (listen on 0) is an ephemeral port, the range every outgoing connection on the machine takes
 * its local port from, so while such a server is down a client socket of a parallel test may take
 * it, and the restart fails with EADDRINUSE (seen in CI). Below that range only an explicit bind
 * can take a port.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** Lowest port in the kernel's ephemeral range (Linux; elsewhere the common default). */
function ephemeralStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * Calls listen on random ports from 10000 up to the ephemeral range until one is free (up to 50
 * tries, then port 0). listen must reject with the bind's error.
 */
export async function listenBelowEphemeral(listen: (port: number) => Promise<void>): Promise<void> {
  const low = ephemeralStart();
  for (let i = 0; i < 50 && low > 10_001; i++) {
    try {
      return await listen(10_000 + Math.floor(Math.random() * (low - 10_000)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
  return listen(0);
}

/** server.listen(port) on 127.0.0.1; rejects with the bind's error (EADDRINUSE...). */
export function listenOn(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A port that was free a moment ago, below the ephemeral range: for a server that will restart on it. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await listenBelowEphemeral((port) => listenOn(srv, port));
  const addr = srv.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}
