import { isIPv4, isIPv6 } from 'node:net';

/**
 * True for hosts that cannot be reached from another machine: 127.0.0.0/8, ::1 and `localhost`.
 * Accepts a bare IPv6 address or one in URL brackets (`[::1]`) and a trailing dot.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '');
  if (h === 'localhost') return true;
  if (isIPv4(h)) return h.startsWith('127.');
  if (isIPv6(h)) {
    // Canonicalise (0:0:0:0:0:0:0:1, ::0001, ...) through the WHATWG URL parser.
    try {
      return new URL(`http://[${h}]/`).hostname === '[::1]';
    } catch {
      return false;
    }
  }
  return false;
}
