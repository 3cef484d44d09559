import { describe, expect, it } from 'vitest';
import { ModelRewriter } from '../src/request/model-rewrite.js';

/** A deterministic sequence of "random" numbers in [0, 1). */
const sequence = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

describe('model rewrites', () => {
  it('splits an alias by weight and names the rule that decided', () => {
    const r = new ModelRewriter([{ model: 'support', targets: [{ model: 'base', weight: 80 }, { model: 'lora', weight: 20 }] }], sequence(0.1, 0.79, 0.8, 0.99));
    expect([0, 1, 2, 3].map(() => r.resolve('support', undefined))).toEqual([
      { target: 'base', rule: 'support' },
      { target: 'base', rule: 'support' },
      { target: 'lora', rule: 'support' },
      { target: 'lora', rule: 'support' },
    ]);
    expect(r.resolve('other', undefined)).toEqual({ target: 'other', rule: null });
    expect(r.resolve('support', 'forced')).toEqual({ target: 'forced', rule: null });
  });

  it('applies the pool\'s exact rules before the configuration\'s, and its generic rule only to models nothing else matches', () => {
    const r = new ModelRewriter([{ model: 'support', targets: [{ model: 'from-config', weight: 1 }] }, { name: 'chat-rule', model: 'chat', targets: [{ model: 'chat-config', weight: 1 }] }], () => 0);
    r.setPoolRules([
      { source: 'older', models: ['support'], targets: [{ model: 'from-pool', weight: 0 }] },
      { source: 'newer', models: ['support'], targets: [{ model: 'ignored', weight: 0 }] },
      { source: 'catch-all', models: [], targets: [{ model: 'fallback', weight: 0 }] },
    ]);
    expect(r.resolve('support', undefined)).toEqual({ target: 'from-pool', rule: 'older' });
    expect(r.resolve('chat', undefined)).toEqual({ target: 'chat-config', rule: 'chat-rule' });
    expect(r.resolve('anything', undefined)).toEqual({ target: 'fallback', rule: 'catch-all' });
    expect(r.aliases.sort()).toEqual(['chat', 'support']);
    // The pool's rules are replaced as a whole: removing them restores the configuration's.
    r.setPoolRules([]);
    expect(r.resolve('support', undefined)).toEqual({ target: 'from-config', rule: 'support' });
    expect(r.resolve('anything', undefined)).toEqual({ target: 'anything', rule: null });
  });

  it('shares equally among targets that all leave their weight unset (0), as GAIE\'s EPP does', () => {
    const r = new ModelRewriter([], sequence(0, 0.34, 0.67, 0.999));
    r.setPoolRules([{ source: 'even', models: ['m'], targets: [{ model: 'a', weight: 0 }, { model: 'b', weight: 0 }, { model: 'c', weight: 0 }] }]);
    expect([0, 1, 2, 3].map(() => r.target('m', undefined))).toEqual(['a', 'b', 'c', 'c']);
  });
});
