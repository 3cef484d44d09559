import { describe, expect, it } from 'vitest';
import { engineRequestPairs, lastRequestIndexForEngine } from '../src/index.js';

describe('engine → request key map', () => {
  it('pairs keys 1:1 when the block sizes match', () => {
    expect(engineRequestPairs(3, 3)).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
    ]);
  });

  it('maps several small engine blocks onto one request block (many:1)', () => {
    // Engine blocks of 16 tokens, request blocks of 64: 8 engine keys, 2 request keys.
    expect(engineRequestPairs(8, 2)).toEqual([
      [0, 0], [1, 0], [2, 0], [3, 0],
      [4, 1], [5, 1], [6, 1], [7, 1],
    ]);
  });

  it('maps one large engine block onto several request blocks (1:many)', () => {
    expect(engineRequestPairs(2, 8)).toEqual([
      [0, 0], [0, 1], [0, 2], [0, 3],
      [1, 4], [1, 5], [1, 6], [1, 7],
    ]);
  });

  it('takes the last request key mapped to an engine key as the next event\'s parent', () => {
    expect(lastRequestIndexForEngine(1, 2, 8)).toBe(7);
    expect(lastRequestIndexForEngine(0, 2, 8)).toBe(3);
    expect(lastRequestIndexForEngine(5, 8, 2)).toBe(1);
    expect(lastRequestIndexForEngine(2, 3, 3)).toBe(2);
    // Uneven ratio: 3 engine keys over 2 request keys.
    const pairs = engineRequestPairs(3, 2);
    for (let e = 0; e < 3; e++) {
      const mapped = pairs.filter(([pe]) => pe === e).map(([, r]) => r);
      expect(lastRequestIndexForEngine(e, 3, 2)).toBe(mapped[mapped.length - 1]);
    }
  });

  it('maps nothing when an event yields no request keys (fewer tokens than one request block)', () => {
    expect(engineRequestPairs(1, 0)).toEqual([]);
    expect(lastRequestIndexForEngine(0, 1, 0)).toBe(-1);
  });
});
