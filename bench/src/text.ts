import type { LocalTokenizer } from '@kvix/tokenization';
import { rng } from './harness.js';

const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they ' +
  'you were her all she there would their we him been has when who will more no if out so said what up its about ' +
  'into than them can only other new some could time these two may then do first any my now such like our over ' +
  'man me even most made after also did many before must through back years where much your way well down should ' +
  'because each just those people how too little state good very make world still own see men work long get here ' +
  'between both life being under never day same another know while last might us great old year off come since ' +
  'shipment parcel warehouse invoice customer delivery route carrier tracking pallet container schedule refund'
).split(' ');

/** Deterministic English-like text (words, punctuation, numbers, line breaks) of about `chars` characters. */
export function prose(seed: number, chars: number): string {
  const next = rng(seed);
  const parts: string[] = [];
  let length = 0;
  let sentence = 0;
  while (length < chars) {
    let word = WORDS[Math.floor(next() * WORDS.length)]!;
    if (sentence === 0) word = word[0]!.toUpperCase() + word.slice(1);
    if (next() < 0.03) word = String(Math.floor(next() * 100_000));
    sentence++;
    const end = sentence > 8 && next() < 0.15;
    if (end) sentence = 0;
    const piece = `${word}${end ? (next() < 0.1 ? '?\n' : '. ') : next() < 0.05 ? ', ' : ' '}`;
    parts.push(piece);
    length += piece.length;
  }
  return parts.join('').trimEnd();
}

/** Characters of `prose` that encode to about `tokens` tokens, measured on a sample. */
export function charsFor(tok: LocalTokenizer, tokens: number): number {
  const sample = prose(0, tokens * 5);
  return Math.round((sample.length / tok.encode(sample, { addSpecialTokens: false }).length) * tokens);
}
