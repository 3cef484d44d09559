import { decode as genericDecode } from '@msgpack/msgpack';
import { decodeEventBatch, encodeEventBatch, type BlockStored, type EventBatch } from '@kvix/kv-events';
import { gpuStored } from './stored-event.js';
import { measure, printTable, rng, si, writeResult } from './harness.js';

const BLOCK_TOKENS = 16;
const GOAL_BLOCKS_PER_SEC = 3e6;

/** One engine step's batch: `events` BlockStored events of `blocksPerEvent` 16-token blocks each. */
function makeBatch(events: number, blocksPerEvent: number, seed: number): EventBatch {
  const next = rng(seed);
  const u64 = (): bigint => (BigInt(Math.floor(next() * 2 ** 32)) << 32n) | BigInt(Math.floor(next() * 2 ** 32));
  const list: BlockStored[] = [];
  for (let e = 0; e < events; e++) {
    const hashes = new BigUint64Array(blocksPerEvent);
    for (let i = 0; i < blocksPerEvent; i++) hashes[i] = u64();
    const tokens = new Uint32Array(blocksPerEvent * BLOCK_TOKENS);
    for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(next() * 151_000);
    list.push(gpuStored(hashes, e % 2 === 0 ? null : u64(), tokens, BLOCK_TOKENS));
  }
  return { ts: 1767225600.125, events: list, dataParallelRank: 0 };
}

export function run(): void {
  const rows: (string | number)[][] = [];
  const metrics: Record<string, number> = {};
  const shapes = [
    { name: 'prefill', events: 8, blocksPerEvent: 16 },
    { name: 'decode-step', events: 32, blocksPerEvent: 1 },
  ];
  for (const shape of shapes) {
    for (const layout of ['array', 'map'] as const) {
      const payload = encodeEventBatch(makeBatch(shape.events, shape.blocksPerEvent, 11), { layout });
      const blocks = shape.events * shape.blocksPerEvent;
      const ours = measure(() => decodeEventBatch(payload), blocks);
      const base = measure(() => genericDecode(payload), blocks, { repetitions: 5 });
      const ratio = ours.median / base.median;
      const label = `${shape.name} ${layout} (${shape.events}×${shape.blocksPerEvent} blocks, ${payload.length} B)`;
      rows.push([label, si(ours.median), `${si(ours.min)}–${si(ours.max)}`, si(base.median), `${ratio.toFixed(1)}×`]);
      metrics[`${shape.name}_${layout}_blocksPerSec`] = ours.median;
      metrics[`${shape.name}_${layout}_baselineBlocksPerSec`] = base.median;
      metrics[`${shape.name}_${layout}_ratio`] = ratio;
    }
  }
  printTable(
    `EventBatch decoding, ${BLOCK_TOKENS}-token blocks, one core (blocks/s; goal ≥ ${si(GOAL_BLOCKS_PER_SEC)})`,
    ['batch', 'kvix', 'spread', '@msgpack/msgpack defaults', 'ratio'],
    rows,
  );
  const goalMet = (metrics['prefill_array_blocksPerSec'] ?? 0) >= GOAL_BLOCKS_PER_SEC && (metrics['prefill_map_blocksPerSec'] ?? 0) >= GOAL_BLOCKS_PER_SEC;
  console.log(`goal ≥ ${si(GOAL_BLOCKS_PER_SEC)} blocks/s (prefill batches, both layouts): ${goalMet ? 'met' : 'NOT met'}`);
  console.log('note: the baseline is lossy (uint64 hashes above 2^53 come back rounded) and builds no typed events.');
  writeResult('event-decode', { unit: 'blocks/s', blockTokens: BLOCK_TOKENS, goal: { blocksPerSec: GOAL_BLOCKS_PER_SEC }, goalMet, metrics });
}
