//! One arm of kvix's `index-peers` benchmark: Dynamo's `RadixTree` on the workload file the
//! TypeScript generator wrote (the kvix arms read the same file). Prints one JSON line.
//!
//! Usage: kvix-bench-dynamo-radix <workload file>

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use dynamo_kv_router::RadixTree;
use dynamo_kv_router::protocols::{
    ExternalSequenceBlockHash, KvCacheEvent, KvCacheEventData, KvCacheStoreData, KvCacheStoredBlockData,
    LocalBlockHash, RouterEvent,
};

/// Live heap bytes, so the tree's own memory is measured (not the process's RSS).
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The workload file's columns (layout: bench/src/index-peers/workload-file.ts).
struct Workload {
    pods: usize,
    store_pod: Vec<u32>,
    store_offset: Vec<u32>,
    store_parent: Vec<u64>,
    store_has_parent: Vec<u32>,
    block_engine: Vec<u64>,
    block_local: Vec<u64>,
    lookup_offset: Vec<u32>,
    lookup_local: Vec<u64>,
    expected_depth_sum: u64,
    expected_max_sum: u64,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_le_bytes(self.bytes[self.at..self.at + 4].try_into().unwrap());
        self.at += 4;
        v
    }
    fn align8(&mut self) {
        self.at = (self.at + 7) & !7;
    }
    fn u32s(&mut self, n: usize) -> Vec<u32> {
        self.align8();
        (0..n).map(|_| self.u32()).collect()
    }
    fn u64s(&mut self, n: usize) -> Vec<u64> {
        self.align8();
        let out = (0..n)
            .map(|i| u64::from_le_bytes(self.bytes[self.at + 8 * i..self.at + 8 * i + 8].try_into().unwrap()))
            .collect();
        self.at += 8 * n;
        out
    }
}

fn read_workload(path: &str) -> Workload {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    assert_eq!(&bytes[0..8], b"KVIXPEER", "not an index-peers workload file");
    let mut r = Reader { bytes: &bytes, at: 8 };
    let version = r.u32();
    assert_eq!(version, 1, "workload file version {version}, expected 1");
    let pods = r.u32() as usize;
    let stores = r.u32() as usize;
    let blocks = r.u32() as usize;
    let lookups = r.u32() as usize;
    let lookup_keys = r.u32() as usize;
    let expected_depth_sum = u64::from(r.u32()) | (u64::from(r.u32()) << 32);
    let expected_max_sum = u64::from(r.u32()) | (u64::from(r.u32()) << 32);
    let store_pod = r.u32s(stores);
    let store_offset = r.u32s(stores + 1);
    let store_has_parent = r.u32s(stores);
    let store_parent = r.u64s(stores);
    let block_engine = r.u64s(blocks);
    let block_local = r.u64s(blocks);
    let _block_request = r.u64s(blocks);
    let lookup_offset = r.u32s(lookups + 1);
    let lookup_local = r.u64s(lookup_keys);
    Workload {
        pods,
        store_pod,
        store_offset,
        store_parent,
        store_has_parent,
        block_engine,
        block_local,
        lookup_offset,
        lookup_local,
        expected_depth_sum,
        expected_max_sum,
    }
}

/// CPU time of this (single-threaded) process in seconds: on a shared machine, wall time also
/// counts the time other processes held the core.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()).map_or(f64::NAN, |ns| ns / 1e9)
}

const INSERT_BUILDS: usize = 3;

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// Heap bytes an event batch holds (the events vector and each event's block vector).
fn heap_bytes_of(batch: &[RouterEvent]) -> isize {
    let mut bytes = std::mem::size_of_val(batch) as isize;
    for ev in batch {
        if let KvCacheEventData::Stored(store) = &ev.event.data {
            bytes += (store.blocks.capacity() * std::mem::size_of::<KvCacheStoredBlockData>()) as isize;
        }
    }
    bytes
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: kvix-bench-dynamo-radix <workload file>");
    let w = read_workload(&path);
    let stores = w.store_pod.len();

    // Events are built before the clock starts: the engine's publisher builds them, not the index.
    let mut events: Vec<RouterEvent> = Vec::with_capacity(stores);
    for s in 0..stores {
        let (a, b) = (w.store_offset[s] as usize, w.store_offset[s + 1] as usize);
        let blocks = (a..b)
            .map(|i| KvCacheStoredBlockData {
                block_hash: ExternalSequenceBlockHash(w.block_engine[i]),
                tokens_hash: LocalBlockHash(w.block_local[i]),
                mm_extra_info: None,
            })
            .collect();
        let parent_hash = (w.store_has_parent[s] != 0).then(|| ExternalSequenceBlockHash(w.store_parent[s]));
        let data = KvCacheEventData::Stored(KvCacheStoreData { parent_hash, start_position: None, blocks });
        events.push(RouterEvent::new(u64::from(w.store_pod[s]), KvCacheEvent { event_id: s as u64, data, dp_rank: 0 }));
    }
    let total_blocks = w.block_engine.len();

    // As the Node arms: a warm-up build into a tree that is dropped, then three timed builds, each
    // into a fresh tree (the median is the figure); the last one's live heap is the memory figure.
    {
        let mut warm = RadixTree::new();
        for ev in events.iter() {
            warm.apply_event(ev.clone()).expect("store refused");
        }
    }
    let mut wall = Vec::new();
    let mut on_cpu = Vec::new();
    let mut tree = RadixTree::new();
    let mut tree_bytes = 0isize;
    for round in 0..INSERT_BUILDS {
        let last = round + 1 == INSERT_BUILDS;
        // Events are built before the clock starts: the engine's publisher builds them, not the index.
        let batch: Vec<RouterEvent> = if last { std::mem::take(&mut events) } else { events.clone() };
        // The previous build's tree goes before the heap is read.
        tree = RadixTree::new();
        let heap_before = LIVE.load(Ordering::Relaxed);
        let batch_bytes = heap_bytes_of(&batch);
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        for ev in batch {
            tree.apply_event(ev).expect("store refused");
        }
        wall.push(start.elapsed().as_secs_f64());
        on_cpu.push(cpu_seconds() - cpu0);
        if last {
            // The batch was consumed (freed) while the tree grew: count it back.
            tree_bytes = LIVE.load(Ordering::Relaxed) - heap_before + batch_bytes;
        }
    }
    let insert_seconds = median(&mut wall);
    let insert_cpu_seconds = median(&mut on_cpu);
    let entries = tree.current_size();

    let lookups = w.lookup_offset.len() - 1;
    let queries: Vec<Vec<LocalBlockHash>> = (0..lookups)
        .map(|q| w.lookup_local[w.lookup_offset[q] as usize..w.lookup_offset[q + 1] as usize].iter().map(|&h| LocalBlockHash(h)).collect())
        .collect();
    // Warm-up: every query once (caches, branch predictors), as the kvix arms do.
    for q in &queries {
        std::hint::black_box(tree.find_matches(q.clone(), false));
    }
    let mut times = Vec::with_capacity(lookups);
    let (mut depth_sum, mut max_sum) = (0u64, 0u64);
    for q in &queries {
        let seq = q.clone();
        let t0 = Instant::now();
        let scores = tree.find_matches(seq, false);
        let dt = t0.elapsed();
        times.push(dt.as_nanos() as f64 / 1000.0);
        depth_sum += scores.scores.values().map(|&d| u64::from(d)).sum::<u64>();
        max_sum += u64::from(scores.scores.values().copied().max().unwrap_or(0));
    }
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| sorted[((p * sorted.len() as f64) as usize).min(sorted.len() - 1)];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{{\"arm\":\"dynamo\",\"pods\":{},\"entries\":{},\"blocks\":{},\"stores\":{},\"insertSeconds\":{},\"insertBlocksPerSec\":{},\"insertCpuSeconds\":{},\"insertBlocksPerCpuSec\":{},\"heapBytes\":{},\"bytesPerEntry\":{},\"lookups\":{},\"lookupP50Us\":{},\"lookupP90Us\":{},\"lookupP99Us\":{},\"lookupMeanUs\":{},\"depthSum\":{},\"maxDepthSum\":{},\"expectedDepthSum\":{},\"expectedMaxDepthSum\":{}}}",
        w.pods,
        entries,
        total_blocks,
        stores,
        insert_seconds,
        total_blocks as f64 / insert_seconds,
        insert_cpu_seconds,
        total_blocks as f64 / insert_cpu_seconds,
        tree_bytes,
        tree_bytes as f64 / entries as f64,
        lookups,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        mean,
        depth_sum,
        max_sum,
        w.expected_depth_sum,
        w.expected_max_sum
    );
}
