/**
 * Offline checks of rendered Kubernetes manifests: `kubectl kustomize` rendering, and validation of
 * each object against the API schemas with kubernetes-models, plus the fields the API does not
 * define (the models accept extra properties; the API server's strict field validation does not).
 * The same approach as test/unit/k8s.test.ts, as a module other manifest tests can import.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import * as apps from 'kubernetes-models/apps/v1';
import * as core from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';

/** A rendered object (plain data). */
export type K8sObject = Record<string, any>;

const ROOT = resolve(import.meta.dirname, '../..');
const MODELS_DIR = join(ROOT, 'node_modules/kubernetes-models');
const NODE_MODULES = join(ROOT, 'node_modules');
const MODELS: Record<string, Record<string, any>> = { v1: core, 'apps/v1': apps };

/** Renders a kustomization directory offline. */
export function kustomize(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`${dir}: ${d.errors[0]?.message}`);
    return d.toJS() as K8sObject;
  });
}

/** Throws a kubernetes-models ValidationError (naming the field) when o does not fit its schema. */
export function validateAgainstSchema(o: K8sObject): void {
  const Model = MODELS[o.apiVersion]?.[o.kind];
  if (typeof Model !== 'function') throw new Error(`no kubernetes-models class for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
}

interface Shape {
  readonly props: Map<string, string>;
  readonly imports: Map<string, string>;
}
const shapes = new Map<string, Shape | null>();

/** The first interface declared in a kubernetes-models .d.ts file, or null for a type alias. */
function shapeOf(file: string): Shape | null {
  const cached = shapes.get(file);
  if (cached !== undefined) return cached;
  const lines = readFileSync(file, 'utf8').split('\n');
  const imports = new Map<string, string>();
  for (const line of lines) {
    const m = /^import \{ (\w+) \} from "([^"]+)";$/.exec(line);
    if (m === null) continue;
    const from = m[2] as string;
    imports.set(m[1] as string, `${from.startsWith('.') ? resolve(dirname(file), from) : join(NODE_MODULES, from)}.d.ts`);
  }
  const start = lines.findIndex((l) => /^export interface \w+/.test(l));
  let shape: Shape | null = null;
  if (start !== -1) {
    const props = new Map<string, string>();
    if (/extends TypeMeta/.test(lines[start] as string)) {
      props.set('apiVersion', 'string');
      props.set('kind', 'string');
    }
    for (let i = start + 1; i < lines.length && !/^\}/.test(lines[i] as string); i++) {
      const m = /^ {4}"([^"]+)"\??: (.*?);?$/.exec(lines[i] as string);
      if (m !== null) props.set(m[1] as string, m[2] as string);
    }
    shape = { props, imports };
  }
  shapes.set(file, shape);
  return shape;
}

function unknownBelow(value: unknown, file: string, path: string): string[] {
  const shape = shapeOf(file);
  if (shape === null || typeof value !== 'object' || value === null || Array.isArray(value)) return [];
  const out: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    const type = shape.props.get(key);
    if (type === undefined) {
      out.push(`${path}.${key}`);
      continue;
    }
    const array = /^Array<(\w+)>$/.exec(type);
    const ref = array ? array[1] : /^\w+$/.test(type) ? type : undefined;
    const childFile = ref === undefined ? undefined : shape.imports.get(ref);
    if (childFile === undefined) continue;
    if (array && Array.isArray(child)) child.forEach((c, i) => out.push(...unknownBelow(c, childFile, `${path}.${key}[${i}]`)));
    else out.push(...unknownBelow(child, childFile, `${path}.${key}`));
  }
  return out;
}

/** Paths of every property of o the Kubernetes API does not define (empty: none). */
export function unknownFields(o: K8sObject): string[] {
  const file = join(MODELS_DIR, o.apiVersion, `${o.kind}.d.ts`);
  if (!existsSync(file)) throw new Error(`no declaration file for ${o.apiVersion} ${o.kind}`);
  return unknownBelow(o, file, `${o.kind}/${o.metadata?.name}`);
}
