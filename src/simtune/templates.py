"""Chat templates: the tokenizer's own first; a small registry of fallbacks otherwise.

The fallbacks are Jinja strings in the format transformers' ``apply_chat_template`` uses,
written from each model family's published prompt format. Assistant turns are wrapped in
``{% generation %}`` so TRL can build assistant-only loss masks.
"""
from __future__ import annotations

from typing import Callable

TEMPLATES: dict[str, str] = {}


def register_template(name: str, *aliases: str) -> Callable[[str], str]:
    def deco(tmpl: str) -> str:
        for n in (name, *aliases):
            TEMPLATES[n] = tmpl
        return tmpl
    return deco


register_template("chatml")(
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

register_template("qwen2", "qwen2.5", "qwen")(
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    + TEMPLATES["chatml"]
)

register_template("llama3", "llama-3")(
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

register_template("chatglm3")(
    "{{ '[gMASK]sop' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '<|assistant|>\n' }}{% generation %}{{ ' ' + message['content'] }}{% endgeneration %}"
    "{% else %}{{ '<|' + message['role'] + '|>\n ' + message['content'] }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

register_template("baichuan2")(
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '<reserved_106>' + message['content'] }}"
    "{% else %}{{ '<reserved_107>' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<reserved_107>' }}{% endif %}"
)

register_template("deepseek")(
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
    "{% else %}{{ 'Assistant: ' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# model_type -> fallback template, for tokenizers that ship none
_BY_MODEL_TYPE = {"qwen2": "qwen2", "qwen3": "chatml", "chatglm": "chatglm3", "baichuan": "baichuan2",
                  "deepseek": "deepseek", "deepseek_v2": "deepseek", "deepseek_v3": "deepseek"}


def get_template(name_or_jinja: str) -> str:
    """A registered name, or a Jinja template string passed through."""
    if "{%" in name_or_jinja or "{{" in name_or_jinja:
        return name_or_jinja
    try:
        return TEMPLATES[name_or_jinja.lower()]
    except KeyError:
        raise KeyError(f"unknown chat template '{name_or_jinja}'; registered: {sorted(set(TEMPLATES))}") from None


def guess_template(tokenizer, model_type: str | None = None) -> str:
    """Pick a fallback for a tokenizer without a template, from the model type or vocabulary."""
    if model_type and model_type in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[model_type]
    vocab = getattr(tokenizer, "get_vocab", dict)()
    if "<|start_header_id|>" in vocab:
        return "llama3"
    if "<reserved_106>" in vocab:
        return "baichuan2"
    if "[gMASK]" in vocab:
        return "chatglm3"
    return "chatml"


def ensure_chat_template(tokenizer, name: str | None = None, model_type: str | None = None) -> str:
    """Make sure ``tokenizer`` has a chat template; return where it came from.

    An explicit ``name`` (registry name or Jinja string) wins; then the tokenizer's own;
    then a fallback guessed from the model type or vocabulary.
    """
    if name:
        tokenizer.chat_template = get_template(name)
        return f"config:{name if name in TEMPLATES else 'jinja'}"
    if getattr(tokenizer, "chat_template", None):
        return "tokenizer"
    guessed = guess_template(tokenizer, model_type)
    tokenizer.chat_template = TEMPLATES[guessed]
    return f"fallback:{guessed}"
