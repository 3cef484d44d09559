/**
 * NATS subject names. One stream subject per pod keeps a pod's operations addressable (a pod's
 * history can be purged on its own) while the stream still orders every pod's operations.
 */
export interface Subjects {
  readonly prefix: string;
  /** The stream subject carrying one pod's applied index operations. */
  ops(pod: string): string;
  /** Every pod's operations (the stream's subject filter). */
  readonly allOps: string;
  /** Speculative entries from routing decisions (core NATS: milliseconds matter, history does not). */
  readonly speculation: string;
  /** One replica's in-flight counts. */
  load(replica: string): string;
  readonly allLoad: string;
}

/**
 * A pod name as one subject token: `.`, `*`, `>`, whitespace and `~` are escaped as `~hh`, so
 * `10.0.0.7:8000` becomes `10~2e0~2e0~2e7:8000` and distinct pods never share a token.
 */
export function subjectToken(name: string): string {
  return name.replace(/[.*>~\s]/g, (c) => `~${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

export function subjects(prefix: string): Subjects {
  return {
    prefix,
    ops: (pod) => `${prefix}.index.${subjectToken(pod)}`,
    allOps: `${prefix}.index.>`,
    speculation: `${prefix}.speculation`,
    load: (replica) => `${prefix}.load.${subjectToken(replica)}`,
    allLoad: `${prefix}.load.*`,
  };
}
