import { z } from 'zod';

export const uint32 = z
  .number({ error: 'expected an integer' })
  .int('expected an integer')
  .min(0, 'token ids are unsigned')
  .max(0xffffffff, 'token ids are 32-bit');

export const tokenList = z.array(uint32, { error: 'expected an array of token ids' });

/**
 * `--tokens 1,2,3` as numbers. Anything but decimal digits (an empty item from a stray comma, hex,
 * an exponent) becomes NaN so validation rejects it: Number('') is 0 and would key a wrong block.
 */
export function tokenFlag(text: string): number[] {
  if (text.trim() === '') return [];
  return text.split(',').map((t) => (/^\d+$/.test(t.trim()) ? Number(t.trim()) : Number.NaN));
}

/** A u64 as its decimal string (JSON numbers cannot hold 64-bit values); safe integers are accepted too. */
export const u64String = z.union([
  z.string().regex(/^(0|[1-9][0-9]*)$/, 'expected an unsigned 64-bit integer as a decimal string').refine((s) => BigInt(s) < 1n << 64n, 'exceeds 2^64-1'),
  z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).transform(String),
]);

export const blockSize = z.number({ error: 'expected a positive integer' }).int('expected an integer').min(1, 'must be at least 1').max(1 << 20);

export const placeholder = z.object({
  identifier: z.string().min(1),
  offset: z.number().int().min(0),
  length: z.number().int().min(1),
});
