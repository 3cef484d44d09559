import { describe, expect, it } from 'vitest';
import { bodyDigest } from '../src/cache/body-digest.js';

describe('chat body digest', () => {
  const body = Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(20_000) }] }));

  it('is the same for the same bytes, wherever they are held', () => {
    const copy = new Uint8Array(body.length + 8).subarray(3, 3 + body.length);
    copy.set(body);
    expect(bodyDigest(copy)).toBe(bodyDigest(body));
  });

  it('differs for a different length, and for a change in either 256-byte end', () => {
    for (const at of [0, 100, 255, body.length - 256, body.length - 1]) {
      const changed = Buffer.from(body);
      changed[at] = changed[at]! ^ 1;
      expect(bodyDigest(changed), `byte ${at}`).not.toBe(bodyDigest(body));
    }
    expect(bodyDigest(body.subarray(1))).not.toBe(bodyDigest(body));
  });
});
