import type { WorkloadSpec } from '../routing/workload.js';

/**
 * The routing benchmark's llm-d-shaped chat, which the decision benchmark replays: 32 groups sharing
 * 2–6 k-token system prompts, conversations of 3–8 turns, 100–400-token questions, 32–160-token
 * answers appended to the history.
 */
export function decisionWorkloadSpec(charsPerToken: number): WorkloadSpec {
  return {
    seed: 7,
    model: 'Qwen/Qwen3-0.6B',
    groups: 32,
    systemTokens: { min: 2000, max: 6000 },
    conversationsPerGroup: 8,
    turns: { min: 3, max: 8 },
    questionTokens: { min: 100, max: 400 },
    outputTokens: { min: 32, max: 160 },
    charsPerToken,
  };
}
