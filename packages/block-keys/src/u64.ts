import { BlockKeysError } from './errors.js';

/** Block keys and engine hashes are full unsigned 64-bit values: `number` loses them above 2^53. */
export const U64_MAX = (1n << 64n) - 1n;

const DECIMAL = /^(0|[1-9][0-9]*)$/;

/**
 * Parses a u64 from its decimal string (the JSON rendering), a bigint, or a safe integer.
 * `what` names the value in the error message.
 */
export function parseU64(value: unknown, what = 'value'): bigint {
  let v: bigint;
  if (typeof value === 'bigint') {
    v = value;
  } else if (typeof value === 'string') {
    if (!DECIMAL.test(value)) {
      throw new BlockKeysError('INVALID_U64', `${what} must be an unsigned 64-bit integer as a decimal string, got ${JSON.stringify(value)}`);
    }
    v = BigInt(value);
  } else if (typeof value === 'number' && Number.isSafeInteger(value)) {
    v = BigInt(value);
  } else {
    throw new BlockKeysError('INVALID_U64', `${what} must be an unsigned 64-bit integer (decimal string), got ${typeof value === 'number' ? String(value) : typeof value}`);
  }
  if (v < 0n || v > U64_MAX) {
    throw new BlockKeysError('INVALID_U64', `${what} is outside the unsigned 64-bit range: ${v}`);
  }
  return v;
}

/** Reinterprets any integer's low 64 bits as unsigned (two's complement for negatives). */
export function asU64(value: bigint): bigint {
  return BigInt.asUintN(64, value);
}

/** The value as the decimal string used in every JSON document kvix emits. */
export function u64ToDecimal(value: bigint): string {
  return value.toString(10);
}

/** Reads the last 8 bytes of `bytes` as a big-endian u64 (shorter inputs are left-padded with zeros). */
export function u64FromTrailingBytes(bytes: Uint8Array): bigint {
  let v = 0n;
  const start = Math.max(0, bytes.length - 8);
  for (let i = start; i < bytes.length; i++) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}
