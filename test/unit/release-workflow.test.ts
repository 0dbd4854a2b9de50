/**
 * .github/workflows/release.yml cannot run here (no GitHub, no registry): parsed and checked for
 * what a release needs. On a version tag it builds linux/amd64 and linux/arm64 images from the
 * Dockerfile, with an SBOM and provenance, and pushes them to ghcr.io with the token GitHub gives
 * the job, holding no more permission than that.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../support/k8s.js';

type Obj = Record<string, any>;
const workflow = parseYaml(readFileSync(join(ROOT, '.github/workflows/release.yml'), 'utf8')) as Obj;
const jobs = Object.values(workflow.jobs as Record<string, Obj>);
const steps = jobs.flatMap((j) => j.steps as Obj[]);
const step = (action: string): Obj => {
  const found = steps.filter((s) => typeof s.uses === 'string' && s.uses.startsWith(`${action}@`));
  expect(found, action).toHaveLength(1);
  return found[0] as Obj;
};

describe('.github/workflows/release.yml', () => {
  it('runs on version tags only', () => {
    expect(Object.keys(workflow.on)).toEqual(['push']);
    expect(workflow.on.push.branches).toBeUndefined();
    const tags = workflow.on.push.tags as string[];
    expect(tags.length).toBeGreaterThan(0);
    // GitHub's filter glob: * matches anything but '/'.
    const matches = (tag: string): boolean => tags.some((t) => new RegExp(`^${t.replace(/\./g, '\\.').replace(/\*/g, '[^/]*')}$`).test(tag));
    expect(matches('v1.2.3')).toBe(true);
    expect(matches('v0.1.0')).toBe(true);
    expect(matches('main')).toBe(false);
    expect(matches('1.2.3')).toBe(false);
  });

  it('builds linux/amd64 and linux/arm64 from the Dockerfile with an SBOM and provenance, and pushes', () => {
    const build = step('docker/build-push-action').with as Obj;
    expect(String(build.platforms).split(',').map((p) => p.trim()).sort()).toEqual(['linux/amd64', 'linux/arm64']);
    expect(build.context).toBe('.');
    expect(build.file ?? 'Dockerfile').toBe('Dockerfile');
    expect(build.push).toBe(true);
    expect(build.sbom).toBe(true);
    expect(String(build.provenance)).toMatch(/^(true|mode=(min|max))$/);
    expect(build.tags).toBe('${{ steps.meta.outputs.tags }}');
    step('docker/setup-buildx-action');
  });

  it('tags the image ghcr.io/OWNER/REPO with the version, and logs in with the job token', () => {
    const meta = step('docker/metadata-action');
    expect(meta.id).toBe('meta');
    expect(meta.with.images).toBe('ghcr.io/${{ github.repository }}');
    expect(meta.with.tags).toMatch(/type=semver,pattern=\{\{version\}\}/);
    const login = step('docker/login-action').with as Obj;
    expect(login.registry).toBe('ghcr.io');
    expect(login.password).toBe('${{ secrets.GITHUB_TOKEN }}');
  });

  it('holds no permission beyond reading the code and writing packages', () => {
    expect(workflow.permissions).toEqual({ contents: 'read' });
    for (const job of jobs) expect(job.permissions).toEqual({ contents: 'read', packages: 'write' });
  });

  it('pins every action to a major version or a commit', () => {
    for (const s of steps.filter((x) => x.uses)) expect(s.uses).toMatch(/^[\w.-]+\/[\w.-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$/);
  });

  it('needs no emulation: without QEMU, the Dockerfile runs its build stages on the build platform and nothing in the runtime stage', () => {
    expect(steps.some((s) => String(s.uses).startsWith('docker/setup-qemu-action@'))).toBe(false);
    const stages = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\r?\n/g, ' ').split(/^FROM /m).slice(1);
    const runtime = stages.at(-1) as string;
    for (const stage of stages.slice(0, -1)) expect(stage).toMatch(/^--platform=\$BUILDPLATFORM /);
    expect(runtime).not.toMatch(/^RUN /m);
  });
});
