import { readFile } from 'node:fs/promises';
import { EventDecodeError, batchToDebugJson, decodeEventBatch } from '@kvix/kv-events';
import type { Command } from 'commander';
import { UsageError, readStdin, writeJson } from '../io.js';

const HEX = /^(?:[0-9a-fA-F]{2})+$/;

/**
 * The payload as hex, from raw hex text, a JSON string, or a JSON object with a "payload" (or
 * "hex"/"payloadHex") field: whatever a user pastes from a capture or a log line.
 */
export function payloadFromText(text: string): Uint8Array {
  let s = text.trim();
  if (s.startsWith('"') || s.startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(s) as unknown;
    } catch {
      throw new UsageError('decode: input looks like JSON but does not parse');
    }
    if (typeof doc === 'string') s = doc;
    else if (doc !== null && typeof doc === 'object') {
      const o = doc as Record<string, unknown>;
      const v = o['payload'] ?? o['hex'] ?? o['payloadHex'];
      if (typeof v !== 'string') throw new UsageError('decode: JSON input needs a "payload" hex string');
      s = v;
    }
  }
  s = s.replace(/\s+/g, '').replace(/^0x/i, '');
  if (s === '') throw new UsageError('decode: no payload given');
  if (!HEX.test(s)) throw new UsageError('decode: payload is not an even-length hex string');
  return new Uint8Array(Buffer.from(s, 'hex'));
}

export function decodeToJson(payload: Uint8Array): unknown {
  try {
    return batchToDebugJson(decodeEventBatch(payload));
  } catch (err) {
    if (err instanceof EventDecodeError) throw new UsageError(`decode: malformed batch (${err.code}): ${err.message}`);
    throw err;
  }
}

export function registerDecode(program: Command): void {
  program
    .command('decode')
    .summary('decode one KV-event payload (msgpack EventBatch) into JSON')
    .description(
      [
        'Decodes a KV-event payload exactly as kvix ingests it. Input: the payload as hex on stdin (raw,',
        'as a JSON string, or {"payload":"<hex>"}), --hex, or raw bytes with --file.',
        'Prints {"ts":…,"dataParallelRank":n|null,"events":[…],"skipped":[{"index":i,"reason":"…"}]};',
        '64-bit hashes as decimal strings, medium as sent with the tier it maps to, and every field of',
        'vLLM 0.34 (locality, ownership, sessionId, lookaheadTokenIds) and SGLang (cacheSalt, sessionId;',
        '"dialect":"sglang", "signedHashes":true). A payload that is not a batch exits 2.',
      ].join('\n'),
    )
    .option('--hex <hex>', 'the payload as a hex string')
    .option('--file <path>', 'read the raw payload bytes from a file')
    .action(async (flags: { hex?: string; file?: string }) => {
      let payload: Uint8Array;
      if (flags.file !== undefined) {
        try {
          payload = new Uint8Array(await readFile(flags.file));
        } catch (err) {
          throw new UsageError(`decode: cannot read ${flags.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      } else if (flags.hex !== undefined) {
        payload = payloadFromText(flags.hex);
      } else {
        if (process.stdin.isTTY) throw new UsageError('decode: no input; pipe the payload hex on stdin, or use --hex / --file');
        payload = payloadFromText(await readStdin());
      }
      writeJson(decodeToJson(payload));
    });
}
