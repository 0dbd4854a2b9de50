/**
 * The output template language: literal text with `{{name}}` placeholders (spaces inside the braces
 * allowed), nothing else. No expressions, no filters, no code: a template can only place the
 * token's fields. Pure.
 */

/** The placeholders a template may use, in the order error messages list them. */
export const PLACEHOLDERS = [
  'access_token',
  'token_type',
  'expires_at',
  'expires_at_rfc3339',
  'obtained_at',
  'expires_in',
  'scope',
  'name',
] as const;

/** One placeholder's name. */
export type Placeholder = (typeof PLACEHOLDERS)[number];

/** The values a template is rendered with (TokenFields in render.ts builds them). */
export type TemplateValues = Readonly<Record<Placeholder, string>>;

/** A parsed template: literal text and placeholders, alternating. */
export type Template = readonly (string | { readonly field: Placeholder })[];

/** Largest template accepted (characters, inline or from a file): 64 KiB. */
export const MAX_TEMPLATE_CHARS = 64 * 1024;

const KNOWN: ReadonlySet<string> = new Set(PLACEHOLDERS);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** parseTemplate's answer: the template, or every problem found (each names a line, never the text around it). */
export type TemplateParse = { readonly ok: true; readonly template: Template } | { readonly ok: false; readonly problems: readonly string[] };

/**
 * Parses template text. Every `{{` must open a known placeholder closed by `}}`; an unknown name,
 * a malformed placeholder or an unterminated `{{` is a problem (the whole text is checked, so one
 * run reports every problem). A placeholder name is echoed only when it is a plain identifier.
 */
export function parseTemplate(text: string): TemplateParse {
  if (text.length === 0) return { ok: false, problems: ['must not be empty'] };
  if (text.length > MAX_TEMPLATE_CHARS) return { ok: false, problems: [`is longer than ${MAX_TEMPLATE_CHARS} characters`] };
  const parts: (string | { field: Placeholder })[] = [];
  const problems: string[] = [];
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf('{{', i);
    if (open === -1) {
      parts.push(text.slice(i));
      break;
    }
    if (open > i) parts.push(text.slice(i, open));
    const close = text.indexOf('}}', open + 2);
    if (close === -1) {
      problems.push(`unterminated {{ on line ${lineOf(text, open)}`);
      break;
    }
    const inner = text.slice(open + 2, close).trim();
    if (!IDENT.test(inner)) {
      problems.push(`malformed placeholder on line ${lineOf(text, open)} (expected {{name}})`);
    } else if (!KNOWN.has(inner)) {
      problems.push(`unknown placeholder {{${inner}}} on line ${lineOf(text, open)} (known: ${PLACEHOLDERS.join(', ')})`);
    } else {
      parts.push({ field: inner as Placeholder });
    }
    i = close + 2;
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, template: parts };
}

/** Fills a parsed template with values. */
export function renderTemplate(template: Template, values: TemplateValues): string {
  let out = '';
  for (const part of template) out += typeof part === 'string' ? part : values[part.field];
  return out;
}
