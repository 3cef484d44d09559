import { llmdChatSpec, type WorkloadSpec } from '../routing/workload.js';

/** The routing benchmark's llm-d-shaped chat (seed 7), which the decision benchmark replays. */
export function decisionWorkloadSpec(charsPerToken: number): WorkloadSpec {
  return llmdChatSpec(7, 'Qwen/Qwen3-0.6B', charsPerToken);
}
