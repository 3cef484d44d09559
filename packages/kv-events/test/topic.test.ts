import { describe, expect, it } from 'vitest';
import { formatTopic, parseTopic } from '../src/index.js';

describe('topics', () => {
  it('reads pod and model from the llm-d convention, keeping slashes in the model', () => {
    expect(parseTopic('kv@10.0.0.7:8000@Qwen/Qwen3-32B')).toEqual({ prefix: 'kv', podId: '10.0.0.7:8000', model: 'Qwen/Qwen3-32B' });
  });

  it('treats vLLM\'s default empty topic and any other shape as "unknown"', () => {
    for (const t of ['', 'kv', 'kv@10.0.0.7:8000', 'kv@a@b@c', 'my-topic']) {
      expect(parseTopic(t)).toEqual({ prefix: null, podId: null, model: null });
    }
  });

  it('round-trips through formatTopic', () => {
    expect(parseTopic(formatTopic('[::1]:8000', 'org/model'))).toEqual({ prefix: 'kv', podId: '[::1]:8000', model: 'org/model' });
  });
});
