import type { LocalTokenizer } from '../local-tokenizer.js';
import { resolveTokenizer } from '../resolve.js';

/** Tokenizers by spec, each loaded once per thread on first use. */
export class TokenizerLoader {
  private readonly loaded = new Map<string, Promise<LocalTokenizer>>();

  load(spec: string): Promise<LocalTokenizer> {
    let tokenizer = this.loaded.get(spec);
    if (tokenizer === undefined) {
      tokenizer = resolveTokenizer(spec);
      this.loaded.set(spec, tokenizer);
      // A directory that appears later (a volume mounted after start) must still be found.
      tokenizer.catch(() => this.loaded.delete(spec));
    }
    return tokenizer;
  }
}
