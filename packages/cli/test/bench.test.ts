import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ceiling } from '@kvix/test-support';
import { describe, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../bin/kvix.js', import.meta.url));

describe('kvix bench index --json', () => {
  it('prints one JSON document with the figures scripts read', () => {
    // A small index: the contract is what is checked here, the figures are bench/'s business.
    const r = spawnSync(process.execPath, [BIN, 'bench', 'index', '--entries', '100000', '--json', '--no-baseline'], { encoding: 'utf8', timeout: ceiling(120_000) });
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const doc = JSON.parse(lines[0]!) as Record<string, unknown>;
    for (const field of ['ingestTokensPerSec', 'lookupP50Us', 'lookupP99Us', 'bytesPerEntry', 'entries']) {
      expect(typeof doc[field]).toBe('number');
      expect(doc[field] as number).toBeGreaterThan(0);
    }
    expect(doc['entries'] as number).toBeGreaterThan(99_000);
    expect(doc).toHaveProperty('baselineRatio', null);
  }, ceiling(120_000));
});
