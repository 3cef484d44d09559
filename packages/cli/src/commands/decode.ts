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

type DebugEvent = Record<string, unknown>;

const list = (v: unknown): string => (Array.isArray(v) ? v.join(' ') : '');

/** The medium as sent and, when it differs, the tier it counts as. */
function mediumOf(e: DebugEvent): string {
  const medium = String(e['medium'] ?? '-');
  const tier = typeof e['tier'] === 'string' ? e['tier'] : null;
  return (tier !== null && tier !== medium.toLowerCase() ? `${medium}→${tier}` : medium).padEnd(5);
}

/** vLLM 0.34's and SGLang's fields, when sent. */
function newerFields(e: DebugEvent): (string | null)[] {
  const present = (k: string): boolean => e[k] !== null && e[k] !== undefined;
  return [
    present('locality') ? `locality ${String(e['locality'])}` : null,
    present('ownership') ? `owner ${String(e['ownership'])}` : null,
    present('sessionId') ? `session ${String(e['sessionId'])}` : null,
    present('cacheSalt') ? `cache salt ${String(e['cacheSalt'])}` : null,
    present('lookaheadTokenIds') ? `lookahead ${JSON.stringify(e['lookaheadTokenIds'])}` : null,
    e['dialect'] === 'sglang' ? 'SGLang' : null,
  ];
}

/** The decoded batch for people: one line per event (JSON, with --json or stdin input, is for scripts). */
export function decodeToTable(doc: unknown): string {
  const d = doc as { ts: number; dataParallelRank: number | null; events: DebugEvent[]; skipped: { index: number; reason: string }[] };
  const when = Number.isFinite(d.ts) ? ` (${new Date(d.ts * 1000).toISOString()})` : '';
  const lines = [`${d.events.length} event(s), ts ${d.ts}${when}, data-parallel rank ${d.dataParallelRank ?? 'none'}${d.skipped.length ? `, ${d.skipped.length} skipped` : ''}`];
  d.events.forEach((e, i) => {
    const hashes = Array.isArray(e['blockHashes']) ? (e['blockHashes'] as unknown[]) : [];
    const head = `${String(i).padStart(5)}  ${String(e['type']).padEnd(16)}`;
    if (e['type'] === 'BlockStored') {
      const tokens = Array.isArray(e['tokenIds']) ? (e['tokenIds'] as unknown[]).length : 0;
      const extras = [
        e['parentBlockHash'] !== null ? `parent ${String(e['parentBlockHash'])}` : 'no parent',
        e['loraName'] !== null ? `LoRA ${String(e['loraName'])}` : null,
        e['groupIdx'] !== null && e['groupIdx'] !== undefined ? `group ${String(e['groupIdx'])}` : null,
        Array.isArray(e['extraKeys']) && (e['extraKeys'] as unknown[]).some((k) => k !== null) ? `extra keys ${JSON.stringify(e['extraKeys'])}` : null,
        ...newerFields(e),
      ].filter((x) => x !== null);
      lines.push(`${head}${mediumOf(e)} ${hashes.length} block(s) of ${String(e['blockSize'])}, ${tokens} token(s), ${extras.join(', ')}`);
      lines.push(`${' '.repeat(7)}hashes ${list(hashes)}`);
    } else if (e['type'] === 'BlockRemoved') {
      lines.push(`${head}${mediumOf(e)} ${hashes.length} block(s)${e['groupIdx'] !== null && e['groupIdx'] !== undefined ? `, group ${String(e['groupIdx'])}` : ''}${[...newerFields(e)].filter((x) => x !== null).map((x) => `, ${x}`).join('')}`);
      lines.push(`${' '.repeat(7)}hashes ${list(hashes)}`);
    } else lines.push(head.trimEnd());
  });
  for (const s of d.skipped) lines.push(`${String(s.index).padStart(5)}  skipped: ${s.reason}`);
  return `${lines.join('\n')}\n`;
}

export function registerDecode(program: Command): void {
  program
    .command('decode')
    .summary('decode one KV-event payload (msgpack EventBatch): a table, or JSON with --json')
    .description(
      [
        'Decodes a KV-event payload exactly as kvix ingests it. Input: the payload as hex on stdin (raw,',
        'as a JSON string, or {"payload":"<hex>"}), --hex, or raw bytes with --file.',
        'Prints {"ts":…,"dataParallelRank":n|null,"events":[…],"skipped":[{"index":i,"reason":"…"}]};',
        '64-bit hashes as decimal strings, medium as sent with the tier it maps to, and every field of',
        'vLLM 0.34 (locality, ownership, sessionId, lookaheadTokenIds) and SGLang (cacheSalt, sessionId;',
        '"dialect":"sglang", "signedHashes":true). A payload that is not a batch exits 2.',
        'Flags (--hex, --file) print one line per event unless --json; input on stdin prints JSON.',
      ].join('\n'),
    )
    .option('--hex <hex>', 'the payload as a hex string')
    .option('--file <path>', 'read the raw payload bytes from a file')
    .option('--json', 'print the JSON document instead of a table (always on with input on stdin)')
    .action(async (flags: { hex?: string; file?: string; json?: boolean }) => {
      let fromStdin = false;
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
        fromStdin = true;
      }
      const doc = decodeToJson(payload);
      if (flags.json || fromStdin) writeJson(doc);
      else process.stdout.write(decodeToTable(doc));
    });
}
