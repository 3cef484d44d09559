/**
 * BlockStored's fields by array position (position 0 is the tag), as vLLM declares them; the
 * decoder's map-key table and the encoder's map writer both read this one list.
 */
export const STORED_FIELDS = [
  '',
  'block_hashes',
  'parent_block_hash',
  'token_ids',
  'block_size',
  'lora_id',
  'medium',
  'lora_name',
  'extra_keys',
  'group_idx',
  'kv_cache_spec_kind',
  'kv_cache_spec_sliding_window',
  // vLLM ≥ 0.34
  'locality',
  'ownership',
  'session_id',
  'lookahead_token_ids',
] as const;

/** SGLang's field, a map key only (its positional layout is not vLLM's): numbered after vLLM's last. */
export const CACHE_SALT_FIELD = 'cache_salt';
