import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';

/** A configuration a service cannot start with; the message names every offending key. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly code = 'INVALID_CONFIG';
}

type Plain = Record<string, unknown>;

export interface ConfigLayers {
  /** A YAML (or JSON) file holding any part of the configuration. */
  file?: string | undefined;
  /** Values from environment variables, already placed at their paths (see envLayer). */
  env?: Plain;
  /** Values from flags the user typed, already placed at their paths (see flagLayer). */
  flags?: Plain;
}

/**
 * The one validated configuration of a service: schema defaults < file < environment < flags.
 * Nested objects merge key by key; arrays and scalars are replaced by the later layer.
 */
export function resolveConfig<S extends z.ZodType>(service: string, schema: S, layers: ConfigLayers): z.output<S> {
  const fromFile = layers.file === undefined ? {} : readConfigFile(layers.file);
  const merged = deepMerge(deepMerge(fromFile, layers.env ?? {}), layers.flags ?? {});
  const parsed = schema.safeParse(merged);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    const where = layers.file === undefined ? '' : ` (file ${layers.file}, environment and flags)`;
    throw new ConfigError(`invalid ${service} configuration${where}: ${issues.join('; ')}`);
  }
  return parsed.data;
}

export function readConfigFile(path: string): Plain {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (!isPlain(doc)) throw new ConfigError(`config file ${path} must hold a mapping at the top level`);
  return doc;
}

/** How an environment variable or flag maps into the configuration. */
export interface Binding {
  /** Dotted path in the configuration, e.g. "ingest.endpointsFile". */
  path: string;
  /** How an environment string is read. Default string. */
  as?: 'string' | 'number' | 'boolean' | 'list';
}

/** Places the set environment variables of `bindings` at their configuration paths. */
export function envLayer(env: NodeJS.ProcessEnv, bindings: Readonly<Record<string, Binding>>): Plain {
  const out: Plain = {};
  for (const [name, binding] of Object.entries(bindings)) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    setPath(out, binding.path, fromEnvString(name, raw, binding.as ?? 'string'));
  }
  return out;
}

function fromEnvString(name: string, raw: string, as: NonNullable<Binding['as']>): unknown {
  switch (as) {
    case 'string':
      return raw;
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      throw new ConfigError(`environment variable ${name} must be a boolean (true/false), got ${JSON.stringify(raw)}`);
    case 'number': {
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new ConfigError(`environment variable ${name} must be a number, got ${JSON.stringify(raw)}`);
      return n;
    }
  }
}

/**
 * The flags a user actually typed, placed at their configuration paths. Commander also reports
 * help-text defaults, which must never win over the file or the environment.
 */
export function flagLayer(cmd: Command, bindings: Readonly<Record<string, string>>): Plain {
  const out: Plain = {};
  for (const [key, value] of Object.entries(explicitFlags(cmd))) {
    const path = bindings[key];
    if (path !== undefined) setPath(out, path, value);
  }
  return out;
}

/** The options a user actually passed on the command line (or through commander's env support). */
export function explicitFlags(cmd: Command): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(cmd.opts())) {
    const source = cmd.getOptionValueSource(key);
    if (source === 'cli' || source === 'env' || key === 'config') out[key] = value;
  }
  return out;
}

/** Commander argument parsers that reject bad values at the command line, naming the flag's value. */
export function integerArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`expected an integer, got ${JSON.stringify(value)}`);
  return n;
}

export function numberArg(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got ${JSON.stringify(value)}`);
  return n;
}

/** For repeatable flags: `--pod a --pod b` or `--pod a,b`. */
export function collectArg(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)];
}

export function setPath(target: Plain, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (!isPlain(next)) node[part] = {};
    node = node[part] as Plain;
  }
  node[parts[parts.length - 1]!] = value;
}

function deepMerge(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const prev = out[k];
    out[k] = isPlain(prev) && isPlain(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

function isPlain(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
