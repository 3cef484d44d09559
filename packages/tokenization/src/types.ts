/** An OpenAI chat message as a client sends it; vLLM's normalisation is applied before templating. */
export interface ChatMessage {
  role: string;
  content: string | Array<{ type: string; text?: string; [k: string]: unknown }> | null;
  name?: string;
  tool_calls?: unknown[];
  tool_call_id?: string;
  [k: string]: unknown;
}

export interface ChatTemplateOptions {
  /** Default true, as vLLM's chat endpoint; default false when `continueFinalMessage` is set. */
  addGenerationPrompt?: boolean;
  /** Default false. Setting it together with an explicit `addGenerationPrompt: true` is rejected, as in vLLM. */
  continueFinalMessage?: boolean;
  /** OpenAI `tools`; normalised the way vLLM serialises them before the template sees them. */
  tools?: unknown[] | null;
  /** A template, or the name of one of the tokenizer's named templates, instead of its default. */
  chatTemplate?: string | null;
  /** Extra template variables, e.g. `{ enable_thinking: false }` for Qwen3. */
  chatTemplateKwargs?: Record<string, unknown>;
  /** `encodeChat` only: vLLM's chat `add_special_tokens` (default false; the template adds them). */
  addSpecialTokens?: boolean;
}

export interface EncodeOptions {
  /** Default true, as vLLM's completions endpoint. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Default true, as vLLM when it detokenizes generated text. */
  skipSpecialTokens?: boolean;
}

/** Bounds on rendering a chat template (a template is a program; a request may bring its own). */
export interface RenderLimits {
  /** Epoch milliseconds after which rendering stops with DEADLINE_EXCEEDED. */
  deadline?: number;
  /** Longest rendered prompt, in characters; more is PROMPT_TOO_LONG. */
  maxChars?: number;
}
