/**
 * An exact cache for tokenization. A tokenizer first splits text on its added tokens (special
 * tokens such as <|im_start|>); each piece between them is normalized, pre-tokenized and merged on
 * its own, so a piece's ids do not depend on the rest of the text. Caching per piece therefore
 * returns exactly what a fresh tokenization would — and a chat prompt's system message and its
 * earlier turns, the same across a conversation's requests, are tokenized once. (Measured: the JS
 * BPE encodes ~0.5 M tokens/s.)
 *
 * The argument only holds for some tokenizers, so it is enabled only when: every added token is
 * matched on raw text without stripping neighbours (normalized, lstrip, rstrip all false), and the
 * pre-tokenizer ignores a piece's position (no Metaspace, whose "first" scheme treats piece 0
 * differently). With special tokens requested, the post-processor must add none (ByteLevel/none).
 */
import { isPlainObject, type JsonObject } from './config.js';
import type { PieceTrace } from './prefix-keys.js';

const MIN_CACHED_LENGTH = 64;
/**
 * Above this many added tokens the splitting pattern is not built as one regular expression
 * (tokenizers with thousands of reserved tokens); a trie walk is used instead.
 */
const MAX_PATTERN_TOKENS = 4096;
/** Above this many different first characters of added tokens, the whole pattern finds them. */
const MAX_FIRST_CHARS = 4;

export interface SegmentCacheStats {
  hits: number;
  misses: number;
  cachedTokens: number;
}

/** A cached piece's ids, and an identity no other piece shares while it is cached. */
interface CachedPiece {
  /** The piece itself, compared in full before the entry is used. */
  text: string;
  ids: Uint32Array;
  uid: number;
}

/** Code units of a piece that its cache key is made of, besides its length: both ends and a spread between. */
const KEY_EDGE = 32;
const KEY_SPREAD = 64;

/**
 * What finds a cached piece: its length and a hash of ~130 of its characters. A Map keyed by the
 * piece itself hashed every new piece in full (up to 16 k characters) and then compared it with
 * the stored one, two passes over text that is cold by the time a routing decision reads it; this
 * key leaves the one comparison that makes a hit exact. Pieces that differ only between sampled
 * characters share a key: the newer replaces the older (a miss, never a wrong answer).
 */
function pieceKey(piece: string): string {
  const n = piece.length;
  let h = 0x811c9dc5 ^ n;
  const edge = Math.min(KEY_EDGE, n);
  for (let i = 0; i < edge; i++) h = Math.imul(h ^ piece.charCodeAt(i), 0x01000193);
  for (let i = Math.max(edge, n - KEY_EDGE); i < n; i++) h = Math.imul(h ^ piece.charCodeAt(i), 0x01000193);
  const step = Math.max(1, Math.floor(n / KEY_SPREAD));
  for (let i = step >> 1; i < n; i += step) h = Math.imul(h ^ piece.charCodeAt(i), 0x01000193);
  return `${n}:${(h >>> 0).toString(36)}`;
}

/**
 * A copy of a piece that keeps nothing else alive: a slice of the rendered prompt holds the whole
 * prompt in memory for as long as it is a cache key. (Concatenation then slice makes V8 flatten a
 * new string of just the piece.)
 */
function detached(piece: string): string {
  return `${piece} `.slice(0, -1);
}

interface TrieNode {
  [ch: string]: TrieNode | string | undefined;
}

const END = '\u0000end';

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export class SegmentEncoder {
  /** Added tokens, longest first (at each position the first alternative that matches is the longest), when they start with too many different characters for `sticky`. */
  private readonly pattern: RegExp | null;
  /**
   * The same alternatives, sticky, tried only where an added token can start (one of a few first
   * characters, found with indexOf): 25 µs → 4 µs to find the 15 added tokens of a 20 k-character
   * chat prompt (Qwen3, whose 26 added tokens all start with '<'), the whole pattern being slow
   * to try at every position. Null when the tokens start with too many different characters.
   */
  private readonly sticky: RegExp | null;
  private readonly firstChars: string[];
  private nextAt = new Int32Array(0);
  private readonly trie: TrieNode | null;
  private readonly cache = new Map<string, CachedPiece>();
  private nextUid = 1;
  /** Fingerprint of the pieces encoded so far by the current encodeIds call, when traced. */
  private trace: PieceTrace | null = null;
  private fingerprint = 0;
  private cachedTokens = 0;
  /** Output assembled here, then copied out once. */
  private scratch = new Uint32Array(16_384);
  readonly stats: SegmentCacheStats = { hits: 0, misses: 0, cachedTokens: 0 };

  private constructor(
    private readonly addedIds: ReadonlyMap<string, number>,
    /** A piece's ids, as a new array the encoder may keep. */
    private readonly encodePiece: (text: string) => ArrayLike<number>,
    /** Whether encoding with special tokens adds none (so that path may use the cache too). */
    readonly specialsAddNothing: boolean,
    private readonly maxCachedTokens: number,
  ) {
    const words = [...addedIds.keys()].filter((w) => w.length > 0);
    this.sticky = null;
    this.firstChars = [];
    if (words.length === 0) {
      this.pattern = null;
      this.trie = null;
    } else if (words.length <= MAX_PATTERN_TOKENS) {
      words.sort((a, b) => b.length - a.length);
      const alternatives = words.map(escapeRegExp).join('|');
      const firsts = [...new Set(words.map((w) => w[0]!))];
      if (firsts.length <= MAX_FIRST_CHARS) {
        this.sticky = new RegExp(alternatives, 'y');
        this.firstChars = firsts;
        this.pattern = null;
      } else {
        this.pattern = new RegExp(alternatives, 'g');
      }
      this.nextAt = new Int32Array(this.firstChars.length);
      this.trie = null;
    } else {
      this.pattern = null;
      const trie = Object.create(null) as TrieNode;
      for (const word of words) {
        let node = trie;
        for (const ch of word) node = (node[ch] ??= Object.create(null) as TrieNode) as TrieNode;
        node[END] = word;
      }
      this.trie = trie;
    }
  }

  /** A segment encoder when the tokenizer's rules make per-piece caching exact, else null. */
  static forTokenizer(tokenizerJson: JsonObject, encodePiece: (text: string) => ArrayLike<number>, maxCachedTokens = 2_000_000): SegmentEncoder | null {
    const added = Array.isArray(tokenizerJson['added_tokens']) ? tokenizerJson['added_tokens'] : [];
    const ids = new Map<string, number>();
    for (const t of added) {
      if (!isPlainObject(t) || typeof t['content'] !== 'string' || typeof t['id'] !== 'number') return null;
      if (t['normalized'] === true || t['lstrip'] === true || t['rstrip'] === true) return null;
      ids.set(t['content'], t['id']);
    }
    if (mentionsType(tokenizerJson['pre_tokenizer'], 'Metaspace')) return null;
    const post = tokenizerJson['post_processor'];
    const specialsAddNothing = post === null || post === undefined || onlyTypes(post, ['ByteLevel', 'Sequence']);
    return new SegmentEncoder(ids, encodePiece, specialsAddNothing, maxCachedTokens);
  }

  encode(text: string): number[] {
    return Array.from(this.encodeIds(text));
  }

  /**
   * The ids of `text`, as a new array the caller owns. With `trace`, where each piece ends and a
   * fingerprint of the pieces up to there are appended to it (for PrefixKeyCache).
   */
  encodeIds(text: string, trace?: PieceTrace): Uint32Array<ArrayBuffer> {
    this.trace = trace ?? null;
    this.fingerprint = 0x2545f491;
    let length = 0;
    let start = 0;
    if (this.sticky !== null) {
      const re = this.sticky;
      for (let at = this.firstCandidate(text, 0); at >= 0; ) {
        re.lastIndex = at;
        const m = re.exec(text);
        if (m === null) {
          at = this.nextCandidate(text, at + 1);
          continue;
        }
        if (at > start) length = this.appendPiece(text.slice(start, at), length);
        length = this.append(this.addedIds.get(m[0])!, length);
        start = re.lastIndex;
        at = this.nextCandidate(text, start);
      }
    } else if (this.pattern !== null) {
      const re = this.pattern;
      re.lastIndex = 0;
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        if (m.index > start) length = this.appendPiece(text.slice(start, m.index), length);
        length = this.append(this.addedIds.get(m[0])!, length);
        start = re.lastIndex;
      }
    } else if (this.trie !== null) {
      let i = 0;
      while (i < text.length) {
        const match = this.longestAt(text, i);
        if (match === undefined) {
          i++;
          continue;
        }
        if (i > start) length = this.appendPiece(text.slice(start, i), length);
        length = this.append(this.addedIds.get(match)!, length);
        i += match.length;
        start = i;
      }
    }
    if (start < text.length) length = this.appendPiece(start === 0 ? text : text.slice(start), length);
    this.trace = null;
    return this.scratch.slice(0, length);
  }

  /** Where an added token may start first, at or after `from` (-1: nowhere); resets the per-character positions. */
  private firstCandidate(text: string, from: number): number {
    const chars = this.firstChars;
    for (let k = 0; k < chars.length; k++) this.nextAt[k] = text.indexOf(chars[k]!, from);
    return this.nearest();
  }

  /** The next candidate at or after `from`, reusing each character's known next position while it is ahead. */
  private nextCandidate(text: string, from: number): number {
    const chars = this.firstChars;
    for (let k = 0; k < chars.length; k++) if (this.nextAt[k]! >= 0 && this.nextAt[k]! < from) this.nextAt[k] = text.indexOf(chars[k]!, from);
    return this.nearest();
  }

  private nearest(): number {
    let best = -1;
    for (let k = 0; k < this.firstChars.length; k++) {
      const at = this.nextAt[k]!;
      if (at >= 0 && (best < 0 || at < best)) best = at;
    }
    return best;
  }

  /** Folds a piece's identity into the fingerprint and records the boundary after it. */
  private traced(identity: number, length: number): void {
    const t = this.trace!;
    this.fingerprint = Math.imul(this.fingerprint ^ identity, 0x01000193) ^ (this.fingerprint >>> 15);
    t.fingerprints.push(this.fingerprint >>> 0);
    t.ends.push(length);
  }

  /** An identity for ids no cache entry stands for (short pieces): their content. */
  private static contentIdentity(ids: ArrayLike<number>): number {
    let h = 0x6a09e667 ^ ids.length;
    for (let i = 0; i < ids.length; i++) h = Math.imul(h ^ ids[i]!, 0x01000193);
    // Kept apart from cache uids (small positive integers) and added-token ids.
    return (h | 0x4000_0000) >>> 0;
  }

  /** The tokenizer's own rule: the longest added token starting at `i`. */
  private longestAt(text: string, i: number): string | undefined {
    let node: TrieNode | undefined = this.trie!;
    let match: string | undefined;
    for (let j = i; j < text.length; j++) {
      node = node[text[j]!] as TrieNode | undefined;
      if (node === undefined) break;
      const end = node[END];
      if (typeof end === 'string') match = end;
    }
    return match;
  }

  private append(id: number, length: number): number {
    if (length === this.scratch.length) this.grow(length + 1);
    this.scratch[length] = id;
    // Added tokens' identities: their ids, apart from cache uids and content identities.
    if (this.trace !== null) this.traced((id | 0x8000_0000) >>> 0, length + 1);
    return length + 1;
  }

  private appendPiece(piece: string, length: number): number {
    let ids: ArrayLike<number> | undefined;
    let uid = 0;
    if (piece.length < MIN_CACHED_LENGTH) {
      ids = this.encodePiece(piece);
    } else {
      const key = pieceKey(piece);
      const hit = this.cache.get(key);
      if (hit !== undefined && hit.text === piece) {
        this.stats.hits++;
        // Refresh recency: Map order is the eviction order.
        this.cache.delete(key);
        this.cache.set(key, hit);
        ids = hit.ids;
        uid = hit.uid;
      } else {
        this.stats.misses++;
        const encoded = this.encodePiece(piece);
        const fresh = encoded instanceof Uint32Array ? encoded : Uint32Array.from(encoded);
        if (hit !== undefined) this.forget(key, hit);
        uid = this.remember(key, piece, fresh);
        ids = fresh;
      }
    }
    const n = ids.length;
    if (length + n > this.scratch.length) this.grow(length + n);
    if (ids instanceof Uint32Array) this.scratch.set(ids, length);
    else for (let i = 0; i < n; i++) this.scratch[length + i] = ids[i]!;
    if (this.trace !== null) this.traced(uid > 0 ? uid : SegmentEncoder.contentIdentity(ids), length + n);
    return length + n;
  }

  private grow(needed: number): void {
    const next = new Uint32Array(Math.max(needed, this.scratch.length * 2));
    next.set(this.scratch);
    this.scratch = next;
  }

  /** Drops a cached piece (evicted, or replaced by another piece with its key). */
  private forget(key: string, entry: CachedPiece): void {
    this.cache.delete(key);
    this.cachedTokens -= entry.ids.length;
    this.stats.cachedTokens = this.cachedTokens;
  }

  /** Caches a piece's ids; returns its uid (0 when too large to cache). */
  private remember(key: string, text: string, ids: Uint32Array): number {
    if (ids.length > this.maxCachedTokens / 4) return 0;
    // Uids stay below 2^30, apart from content identities and added tokens; they only need to be
    // unique among pieces cached at the same time.
    const uid = this.nextUid;
    this.nextUid = this.nextUid >= 0x3fff_ffff ? 1 : this.nextUid + 1;
    this.cache.set(key, { text: detached(text), ids, uid });
    this.cachedTokens += ids.length;
    while (this.cachedTokens > this.maxCachedTokens) {
      const [oldest, old] = this.cache.entries().next().value as [string, CachedPiece];
      this.forget(oldest, old);
    }
    this.stats.cachedTokens = this.cachedTokens;
    return uid;
  }
}

function mentionsType(node: unknown, type: string): boolean {
  if (Array.isArray(node)) return node.some((n) => mentionsType(n, type));
  if (!isPlainObject(node)) return false;
  if (node['type'] === type) return true;
  return Object.values(node).some((v) => mentionsType(v, type));
}

function onlyTypes(node: unknown, types: readonly string[]): boolean {
  if (Array.isArray(node)) return node.every((n) => onlyTypes(n, types));
  if (!isPlainObject(node)) return true;
  if (typeof node['type'] === 'string' && !types.includes(node['type'])) return false;
  return Object.values(node).every((v) => onlyTypes(v, types));
}
