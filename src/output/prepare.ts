/**
 * Start-up preparation of a token's outputs: what the pure config check cannot see. Template
 * files are read and parsed, every output's directory and path are checked. Reads only: nothing
 * is written, so `tokend check` can call it too.
 */
import type { OutputConfig } from '../config/schema-output.js';
import type { TokenConfig } from '../config/types.js';
import { ConfigError, errnoCode } from '../errors.js';
import { readFileLimited } from '../store/atomic.js';
import { checkOutputTarget, OutputFile } from './file.js';
import type { Renderer } from './render.js';
import { MAX_TEMPLATE_CHARS, parseTemplate } from './template.js';

/** One output ready to be written. */
export interface PreparedOutput {
  /** Config path of the entry, e.g. `tokens.orders.outputs[0]`, for messages. */
  readonly field: string;
  readonly path: string;
  readonly renderer: Renderer;
  readonly file: OutputFile;
}

async function readTemplateFile(path: string): Promise<{ text: string } | { problem: string }> {
  let read;
  try {
    // Up to 4 bytes per character in UTF-8; parseTemplate then applies the character limit.
    read = await readFileLimited(path, MAX_TEMPLATE_CHARS * 4);
  } catch (err) {
    return { problem: `template file ${path} cannot be read (${errnoCode(err)})` };
  }
  if (read.kind === 'missing') return { problem: `template file ${path} does not exist` };
  if (read.kind === 'invalid') return { problem: `template file ${path} ${read.reason}` };
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(read.data) };
  } catch {
    return { problem: `template file ${path} is not valid UTF-8` };
  }
}

/** The renderer for o, or the problems (each `field: message`) that keep it from being built. */
async function rendererFor(o: OutputConfig, field: string): Promise<Renderer | string[]> {
  switch (o.format) {
    case 'raw':
    case 'json':
    case 'header':
      return { format: o.format };
    case 'env':
      return { format: 'env', variable: o.variable ?? 'TOKEN' };
    case 'template': {
      const src = o.template;
      if (src === undefined) return [`${field}.template: required for format template`];
      const at = src.kind === 'inline' ? `${field}.template` : `${field}.templateFile`;
      let text: string;
      if (src.kind === 'inline') {
        text = src.text;
      } else {
        const r = await readTemplateFile(src.path);
        if ('problem' in r) return [`${at}: ${r.problem}`];
        text = r.text;
      }
      const parsed = parseTemplate(text);
      return parsed.ok ? { format: 'template', template: parsed.template } : parsed.problems.map((p) => `${at}: ${p}`);
    }
  }
}

/**
 * Prepares every output of tc. Throws ConfigError (CONFIG_INVALID, exit 2) listing every problem
 * as `tokens.NAME.outputs[i].FIELD: what is wrong` (a missing or unwritable directory, a path that
 * is not a regular file, an unreadable template file, an unknown placeholder).
 */
export async function prepareOutputs(tc: TokenConfig): Promise<PreparedOutput[]> {
  const problems: string[] = [];
  const prepared: PreparedOutput[] = [];
  for (const [i, o] of (tc.outputs ?? []).entries()) {
    const field = `tokens.${tc.name}.outputs[${i}]`;
    const renderer = await rendererFor(o, field);
    const targetProblem = await checkOutputTarget(o.path);
    if (targetProblem !== undefined) problems.push(`${field}.path: ${targetProblem}`);
    if (Array.isArray(renderer)) problems.push(...renderer);
    else prepared.push({ field, path: o.path, renderer, file: new OutputFile(o.path, o.mode) });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return prepared;
}
