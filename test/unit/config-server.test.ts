import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const TOKENS = 'tokens:\n  orders:\n    issuer: https://idp.example.com\n    clientId: c\n    clientSecret: s\n    grant: client_credentials\n';

function problems(text: string): string[] {
  try {
    parseConfig(text, { env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('server settings: allowedHosts, metricsPerToken, metricsListen override', () => {
  it('reads allowedHosts as a list of host names and IP addresses', () => {
    const config = parseConfig(`allowedHosts: [tokend.internal, 10.1.2.3, "[fd00::1]", "fd00::2", TOKEND.Example.]\n${TOKENS}`, { env: {} });
    expect(config.allowedHosts).toEqual(['tokend.internal', '10.1.2.3', '[fd00::1]', 'fd00::2', 'TOKEND.Example.']);
  });

  it('refuses entries with a scheme, a port or a path, naming the entry', () => {
    expect(problems(`allowedHosts: ["https://x.example", "x.example:8477", "x/y", ""]\n${TOKENS}`)).toEqual([
      'allowedHosts[0]: expected a host name or IP address, without scheme or port',
      'allowedHosts[1]: expected a host name or IP address, without scheme or port',
      'allowedHosts[2]: expected a host name or IP address, without scheme or port',
      'allowedHosts[3]: expected a host name or IP address, without scheme or port',
    ]);
    expect(problems(`allowedHosts: tokend.internal\n${TOKENS}`)).toEqual(['allowedHosts: expected a list']);
  });

  it('reads metricsPerToken as a boolean, "false" from ${VAR} too', () => {
    expect(parseConfig(`metricsPerToken: false\n${TOKENS}`, { env: {} }).metricsPerToken).toBe(false);
    expect(parseConfig(`metricsPerToken: \${PER_TOKEN}\n${TOKENS}`, { env: { PER_TOKEN: 'false' } }).metricsPerToken).toBe(false);
    expect(problems(`metricsPerToken: sometimes\n${TOKENS}`)).toEqual(['metricsPerToken: expected true or false']);
  });

  it('leaves both unset when not given (defaults: no extra hosts, per-token series on)', () => {
    const config = parseConfig(TOKENS, { env: {} });
    expect('allowedHosts' in config).toBe(false);
    expect('metricsPerToken' in config).toBe(false);
  });

  it('takes metricsListen from the command line (--metrics-listen) over the file', () => {
    const config = parseConfig(`metricsListen: 0.0.0.0:9477\n${TOKENS}`, { env: {}, overrides: { metricsListen: '127.0.0.1:9999' } });
    expect(config.metricsListen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9999 });
    expect(() => parseConfig(TOKENS, { env: {}, overrides: { metricsListen: 'nope' } })).toThrow(
      'metricsListen: expected host:port, [ipv6]:port or unix:/absolute/path',
    );
  });
});
