/**
 * Offline checks of Kubernetes manifests, shared by the manifest tests: rendering with
 * `kubectl kustomize`, and validation of every object against the API schemas (kubernetes-models
 * and @kubernetes-models/prometheus-operator) including unknown fields, which the models accept
 * but the API server's strict field validation (kubectl's default) refuses: a misspelt
 * `readOnlyRootFileSystem` or `intervall` would otherwise be a silent no-op.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as apps from 'kubernetes-models/apps/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as core from 'kubernetes-models/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as monitoring from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { parseAllDocuments } from 'yaml';

/** The repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The k8s/ directory. */
export const K8S = join(ROOT, 'k8s');

/** A rendered Kubernetes object. */
export type Obj = Record<string, any>;

/** Renders a kustomization directory offline (`kubectl kustomize DIR`) into its objects. */
export function render(dir: string): Obj[] {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`${dir}: ${d.errors[0]?.message}`);
    return d.toJS() as Obj;
  });
}

/**
 * Renders a kustomization written on the fly in a temp dir, as a user's own would be. `write`
 * gets the temp dir and the relative path from it to k8s/ (kustomize only accepts relative paths
 * to other kustomizations) and writes kustomization.yaml and any other file there.
 */
export function renderOwn(write: (dir: string, k8sRel: string) => void): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'tokend-k8s-'));
  try {
    write(dir, relative(dir, K8S));
    return render(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Writes `name` under `dir` (a small helper for renderOwn). */
export function put(dir: string, name: string, text: string): void {
  writeFileSync(join(dir, name), text);
}

/** Objects of a kind (and name). */
export function find(objects: readonly Obj[], kind: string, name?: string): Obj[] {
  return objects.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
}

/** Every workload carrying a pod template. */
export function workloads(objects: readonly Obj[]): Obj[] {
  return objects.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet', 'Job'].includes(o.kind));
}

/** Init containers then containers of a pod spec. */
export function allContainers(pod: Obj): Obj[] {
  return [...(pod.initContainers ?? []), ...(pod.containers ?? [])];
}

/** A Kubernetes quantity in base units (cores, bytes). */
export function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?$/.exec(q);
  if (m === null) throw new Error(`unsupported quantity ${q}`);
  const factor: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 };
  return Number(m[1]) * (m[2] ? (factor[m[2]] as number) : 1);
}

// ---------------------------------------------------------------------------------------------
// Schema validation.

const MODELS: Record<string, Record<string, any>> = {
  v1: core,
  'apps/v1': apps,
  'batch/v1': batch,
  'networking.k8s.io/v1': networking,
  'monitoring.coreos.com/v1': monitoring,
};

/** Model declaration files: where each apiVersion's .d.ts files are. */
const DECLARATIONS: Record<string, string> = {
  'monitoring.coreos.com/v1': join(ROOT, 'node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'),
};
const NODE_MODULES = join(ROOT, 'node_modules');

/** Validates `o` against its API schema; throws the model's ValidationError naming the field. */
export function validateSchema(o: Obj): void {
  const Model = MODELS[o.apiVersion]?.[o.kind];
  if (typeof Model !== 'function') throw new Error(`no kubernetes-models class for ${o.apiVersion} ${o.kind}: add it to MODELS`);
  (new Model(o) as { validate(): void }).validate();
}

/**
 * The shape of a declared type: property name -> a nested inline shape (CRD models declare
 * nested objects inline), the name of an imported type, or null for a leaf. `any` accepts
 * every key (a map such as labels or annotations).
 */
interface Shape {
  readonly props: Map<string, Shape | string | null>;
  readonly imports: Map<string, string>;
  any: boolean;
}
const shapes = new Map<string, Shape | null>();

function parseImports(lines: readonly string[], file: string): Map<string, string> {
  const imports = new Map<string, string>();
  for (const line of lines) {
    const m = /^import \{ (\w+) \} from "([^"]+)";$/.exec(line);
    if (m === null) continue;
    const from = m[2] as string;
    const target = from.startsWith('.') ? resolve(dirname(file), from) : join(NODE_MODULES, from);
    imports.set(m[1] as string, `${target}.d.ts`);
  }
  return imports;
}

/** The first interface declared in a kubernetes-models .d.ts file, or null for a type alias (Quantity). */
function shapeOf(file: string): Shape | null {
  const cached = shapes.get(file);
  if (cached !== undefined) return cached;
  const lines = readFileSync(file, 'utf8').split('\n');
  const imports = parseImports(lines, file);
  const start = lines.findIndex((l) => /^export interface \w+/.test(l));
  let shape: Shape | null = null;
  if (start !== -1) {
    shape = { props: new Map(), imports, any: false };
    if (/extends TypeMeta/.test(lines[start] as string)) {
      shape.props.set('apiVersion', null);
      shape.props.set('kind', null);
    }
    // A stack of the inline shapes being read; `{` at the end of a line opens one, `}` closes.
    const stack: Shape[] = [shape];
    for (let i = start + 1; i < lines.length && stack.length > 0; i++) {
      const line = (lines[i] as string).trim();
      const top = stack.at(-1) as Shape;
      if (/^\}/.test(line)) {
        stack.pop();
        continue;
      }
      const map = /^\[key: string\]: (.*?);?$/.exec(line);
      if (map !== null) {
        top.any = true;
        if ((map[1] as string).endsWith('{')) stack.push({ props: new Map(), imports, any: true });
        continue;
      }
      const m = /^"([^"]+)"\??: (.*?);?$/.exec(line);
      if (m === null) continue;
      const type = m[2] as string;
      if (type.endsWith('{')) {
        const nested: Shape = { props: new Map(), imports, any: false };
        top.props.set(m[1] as string, nested);
        stack.push(nested);
      } else {
        const ref = /^Array<(\w+)>$/.exec(type)?.[1] ?? (/^\w+$/.test(type) ? type : undefined);
        top.props.set(m[1] as string, ref !== undefined && imports.has(ref) ? ref : null);
      }
    }
  }
  shapes.set(file, shape);
  return shape;
}

function unknownIn(value: unknown, shape: Shape | null, path: string): string[] {
  if (shape === null || shape.any || typeof value !== 'object' || value === null) return [];
  if (Array.isArray(value)) return value.flatMap((v, i) => unknownIn(v, shape, `${path}[${i}]`));
  const out: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    if (!shape.props.has(key)) {
      out.push(`${path}.${key}`);
      continue;
    }
    const type = shape.props.get(key);
    if (type === null || type === undefined) continue; // a leaf, a map or a literal union
    const childShape = typeof type === 'string' ? shapeOf(shape.imports.get(type) as string) : type;
    out.push(...unknownIn(child, childShape, `${path}.${key}`));
  }
  return out;
}

/** Paths of every property the API does not define, anywhere in `o`. */
export function unknownFieldsOf(o: Obj): string[] {
  const dir = DECLARATIONS[o.apiVersion] ?? join(NODE_MODULES, 'kubernetes-models', o.apiVersion);
  const file = join(dir, `${o.kind}.d.ts`);
  if (!existsSync(file)) throw new Error(`no declaration file for ${o.apiVersion} ${o.kind}`);
  return unknownIn(o, shapeOf(file), `${o.kind}/${o.metadata?.name}`);
}
