/** One metric family of a Prometheus text exposition. */
export interface Family {
  type: string;
  /** Each sample's labels (a histogram's `le` left out). */
  samples: Record<string, string>[];
}

/** Families of a Prometheus text exposition by name: enough to check names, types and label sets. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      families.set(type[1]!, { type: type[2]!, samples: [] });
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+$/.exec(line);
    if (!sample) continue;
    let name = sample[1]!;
    if (!families.has(name)) name = name.replace(/_(bucket|sum|count)$/, '');
    const family = families.get(name);
    if (!family) continue;
    const labels: Record<string, string> = {};
    for (const m of (sample[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) if (m[1] !== 'le') labels[m[1]!] = m[2]!;
    family.samples.push(labels);
  }
  return families;
}
