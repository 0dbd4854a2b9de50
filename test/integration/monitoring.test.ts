/**
 * k8s/monitoring, checked against the real thing: the PodMonitor and PrometheusRule validate
 * against the Prometheus Operator's schemas and select what the sidecar component adds; the
 * alert rules pass `promtool test rules` on series shaped like a real tokend's /metrics (checked
 * here against one); and a real Prometheus scrapes a running tokend, loads the rules and answers
 * every query of the Grafana dashboard.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevIdp, type DevIdp } from '../support/idp.js';
import { ensureBuiltCli, freePort, scratch, TokendProcess, until } from '../support/daemon.js';
import { find, K8S, ROOT, render, unknownFieldsOf, validateSchema, type Obj } from '../support/k8s.js';
import { metricsPort, podSpec, tokendContainer } from '../support/k8s-tokend.js';

const PROMTOOL_CASES = join(ROOT, 'test/monitoring/alerts.promtool.yaml');
/** Labels a PodMonitor scrape adds to every series (the Prometheus Operator's relabelling). */
const TARGET_LABELS = ['namespace', 'pod', 'container', 'job', 'instance', 'endpoint'];
/** The binary's path when it is installed (`apt-get install prometheus` brings both). */
function which(bin: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}
const PROMTOOL = which('promtool');
const PROMETHEUS = which('prometheus');
const MISSING = (bin: string): string => `${bin} not found on the PATH: apt-get install prometheus (.ci/run installs it)`;

/** Metric name -> label names -> values seen, from Prometheus text exposition. */
function exposition(text: string): Map<string, Map<string, Set<string>>> {
  const out = new Map<string, Map<string, Set<string>>>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? /.exec(line);
    if (m === null) continue;
    const labels = out.get(m[1] as string) ?? new Map<string, Set<string>>();
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels.set(l[1] as string, (labels.get(l[1] as string) ?? new Set()).add(l[2] as string));
    }
    out.set(m[1] as string, labels);
  }
  return out;
}

/** The series of a promtool input_series string: name and labels. */
function series(text: string): { name: string; labels: Record<string, string> } {
  const m = /^(\w+)\{(.*)\}$/.exec(text) as RegExpExecArray;
  return { name: m[1] as string, labels: Object.fromEntries([...(m[2] as string).matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]])) };
}

describe('k8s/monitoring: alerts, PodMonitor and dashboard, against a real tokend and a real Prometheus', () => {
  const s = scratch('tokend-monitoring-');
  let objects: Obj[] = [];
  let rule: Obj;
  let dashboard: Obj;
  let idp: DevIdp;
  let tokend: TokendProcess;
  let metricsUrl = '';
  let prometheus: ChildProcess | undefined;

  beforeAll(async () => {
    expect(ensureBuiltCli()).toBe(true);
    objects = render(join(K8S, 'monitoring'));
    rule = find(objects, 'PrometheusRule')[0]!;
    dashboard = JSON.parse(find(objects, 'ConfigMap', 'grafana-dashboard-tokend')[0]!.data['tokend.json']) as Obj;
    writeFileSync(join(s.dir, 'tokend-rules.yaml'), stringify({ groups: rule.spec.groups }));

    idp = await startDevIdp({ accessTokenTtlSec: 300, clients: [{ clientId: 'orders-client', clientSecret: 'orders-secret-1', scope: 'orders:read' }] });
    const metricsPortNumber = await freePort();
    const config = s.file('tokend.yaml', [
      `listen: 127.0.0.1:${await freePort()}`,
      `metricsListen: 127.0.0.1:${metricsPortNumber}`,
      'tokens:',
      '  orders:',
      `    issuer: ${idp.issuer}`,
      '    clientId: orders-client',
      `    clientSecretFile: ${s.file('orders-secret', 'orders-secret-1\n')}`,
      '    grant: client_credentials',
      '',
    ].join('\n'));
    tokend = new TokendProcess(['run', '--config', config]);
    await tokend.waitForEvent('token.acquired', { token: 'orders' });
    metricsUrl = `http://127.0.0.1:${metricsPortNumber}`;
  }, 30_000);

  afterAll(async () => {
    if (prometheus && prometheus.exitCode === null) {
      prometheus.kill('SIGTERM');
      await once(prometheus, 'exit');
    }
    await tokend?.stop();
    await idp?.close();
    s.cleanup();
  });

  it('renders objects that validate against the Prometheus Operator and Kubernetes schemas, with no unknown field', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'PodMonitor', 'PrometheusRule']);
    for (const o of objects) {
      expect(() => validateSchema(o), `${o.kind}/${o.metadata?.name}`).not.toThrow();
      expect(unknownFieldsOf(o), `${o.kind}/${o.metadata?.name}`).toEqual([]);
    }
    expect(rule.spec.groups[0].rules.map((r: Obj) => r.alert).sort()).toEqual([
      'TokendLogLinesDropped',
      'TokendPermanentFailure',
      'TokendRefreshFailing',
      'TokendTokenExpiringSoon',
      'TokendTokenNotReady',
    ]);
  });

  it('has the PodMonitor select the pods the sidecar component labels, on the port it publishes', () => {
    const monitor = find(objects, 'PodMonitor')[0]!;
    const app = find(render(join(K8S, 'examples/own-app')), 'Deployment')[0]!;
    expect(app.spec.template.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    const port = metricsPort(tokendContainer(podSpec(app)));
    expect(monitor.spec.podMetricsEndpoints.map((e: Obj) => [e.port, e.path])).toEqual([[port.name, '/metrics']]);
  });

  it('has the Grafana dashboard well formed: unique panel ids, on the grid, every query on the datasource variable', () => {
    expect(dashboard.uid).toBe('tokend');
    const ids = (dashboard.panels as Obj[]).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels as Obj[]) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets as Obj[]) expect(t.datasource.uid, p.title).toBe('${datasource}');
    }
    expect((dashboard.templating.list as Obj[]).map((v) => v.name)).toEqual(['datasource', 'namespace', 'pod', 'token']);
  });

  it("feeds promtool series shaped like tokend's real /metrics: the same metric names, labels and result values", async () => {
    const real = exposition(await (await fetch(`${metricsUrl}/metrics`)).text());
    const cases = parseYaml(readFileSync(PROMTOOL_CASES, 'utf8')) as Obj;
    const all = (cases.tests as Obj[]).flatMap((t) => (t.input_series as Obj[]).map((i) => series(i.series)));
    expect(all.length).toBeGreaterThan(0);
    for (const { name, labels } of all) {
      const known = real.get(name);
      expect(known, `${name} is exported by tokend`).toBeDefined();
      const own = Object.keys(labels).filter((l) => !TARGET_LABELS.includes(l));
      expect(own.sort(), name).toEqual([...known!.keys()].filter((l) => l !== 'le').sort());
      if (labels.result !== undefined) expect([...known!.get('result')!], name).toContain(labels.result);
    }
    // Every metric the rules use is in /metrics.
    const used = new Set((rule.spec.groups[0].rules as Obj[]).flatMap((r) => (r.expr as string).match(/tokend_\w+/g) ?? []));
    for (const name of used) expect(real.has(name), `${name} in /metrics`).toBe(true);
  });

  it('passes `promtool test rules`', (ctx) => {
    if (PROMTOOL === undefined) return ctx.skip(MISSING('promtool'));
    copyFileSync(PROMTOOL_CASES, join(s.dir, 'alerts.promtool.yaml'));
    const check = spawnSync(PROMTOOL, ['check', 'rules', 'tokend-rules.yaml'], { cwd: s.dir, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const test = spawnSync(PROMTOOL, ['test', 'rules', 'alerts.promtool.yaml'], { cwd: s.dir, encoding: 'utf8' });
    expect(test.status, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toContain('SUCCESS');
  });

  it("is scraped by a real Prometheus, which loads the rules and answers every dashboard query", async (ctx) => {
    if (PROMETHEUS === undefined) return ctx.skip(MISSING('prometheus'));
    const port = await freePort();
    writeFileSync(join(s.dir, 'prometheus.yml'), stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [join(s.dir, 'tokend-rules.yaml')],
      scrape_configs: [{
        job_name: 'tokend',
        static_configs: [{ targets: [new URL(metricsUrl).host], labels: { namespace: 'shop', pod: 'orders-app-0', container: 'tokend' } }],
      }],
    }));
    let log = '';
    prometheus = spawn(PROMETHEUS, [
      `--config.file=${join(s.dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(s.dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    prometheus.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const api = async (path: string): Promise<Obj> => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/${path}`, { signal: AbortSignal.timeout(5_000) });
      return (await res.json()) as Obj;
    };
    const query = (q: string): Promise<Obj> => api(`query?query=${encodeURIComponent(q)}`);

    const ready = await until(async () => {
      const r = await query('tokend_token_ready').catch(() => undefined);
      return r?.data?.result?.length > 0 ? r : undefined;
    }, `Prometheus to scrape tokend_token_ready (prometheus log: ${log.slice(-500)})`, 30_000, 250);
    expect(ready.data.result[0].metric).toMatchObject({ token: 'orders', namespace: 'shop', pod: 'orders-app-0', job: 'tokend' });
    expect(ready.data.result[0].value[1]).toBe('1');

    // Every rule loaded and evaluated without error; none fires while the token is healthy.
    const rules = await until(async () => {
      const r = await api('rules');
      const list = (r.data.groups as Obj[]).flatMap((g) => g.rules as Obj[]);
      return list.length > 0 && list.every((x) => x.lastEvaluation && !x.lastEvaluation.startsWith('0001')) ? list : undefined;
    }, 'the rules to be evaluated', 15_000, 250);
    expect(rules.map((r) => [r.name, r.health, r.state])).toEqual(
      (rule.spec.groups[0].rules as Obj[]).map((r) => [r.alert, 'ok', 'inactive']),
    );

    // The dashboard's queries, with its variables set as Grafana would ("All" is .*).
    await until(async () => ((await query('rate(tokend_refresh_total[1m])')).data.result.length > 0 ? true : undefined), 'two scrapes for rate()', 15_000, 250);
    const vars: Record<string, string> = { namespace: 'shop', pod: '.*', token: '.*', __rate_interval: '1m', __range: '5m' };
    for (const panel of dashboard.panels as Obj[]) {
      for (const t of panel.targets as Obj[]) {
        const expr = (t.expr as string).replace(/\$(\w+)/g, (_, v: string) => vars[v] ?? `$${v}`);
        const r = await query(expr);
        expect(r.status, `${panel.title}: ${expr}: ${r.error ?? ''}`).toBe('success');
        expect(r.data.result.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
      }
    }
  }, 60_000);
});
