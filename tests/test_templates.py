import pytest
from transformers import AutoTokenizer

from simtune.templates import TEMPLATES, ensure_chat_template, get_template, guess_template

MSGS = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "ANS"}, {"role": "user", "content": "Q2"}]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("name,expect", [
    ("chatml", "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\nANS<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n"),
    ("llama3", "<|start_header_id|>user<|end_header_id|>\n\n你好<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nANS<|eot_id|>"),
    ("chatglm3", "[gMASK]sop<|system|>\n SYS<|user|>\n 你好<|assistant|>\n ANS<|user|>\n Q2<|assistant|>"),
    ("baichuan2", "SYS<reserved_106>你好<reserved_107>ANS"),
    ("deepseek", "SYS\n\nUser: 你好\n\nAssistant: ANS"),
])
def test_fallback_templates_render(tok, name, expect):
    tok.chat_template = get_template(name)
    text = tok.apply_chat_template(MSGS, tokenize=False, add_generation_prompt=True)
    assert expect in text


def test_qwen2_adds_default_system(tok):
    tok.chat_template = get_template("qwen2")
    text = tok.apply_chat_template(MSGS[1:2], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好")


def test_assistant_mask_from_generation_blocks(tok):
    tok.chat_template = get_template("chatml")
    out = tok.apply_chat_template(MSGS[:3], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(ids) == "ANS<|im_end|>"


def test_tokenizer_own_template_wins_and_fallback_guessed(tok):
    tok.chat_template = "{{ 'OWN' }}"
    assert ensure_chat_template(tok) == "tokenizer" and tok.chat_template == "{{ 'OWN' }}"
    tok.chat_template = None
    assert ensure_chat_template(tok, model_type="qwen2") == "fallback:qwen2"
    tok.chat_template = None
    assert ensure_chat_template(tok) == "fallback:chatml"  # SmolLM2 vocab has no llama3/glm markers
    assert ensure_chat_template(tok, "llama3") == "config:llama3" and "start_header_id" in tok.chat_template
    assert guess_template(tok, "chatglm") == "chatglm3"


def test_unknown_template_name():
    with pytest.raises(KeyError, match="unknown chat template 'vicuna'"):
        get_template("vicuna")
    assert {"chatml", "qwen2", "llama3", "chatglm3", "baichuan2", "deepseek"} <= set(TEMPLATES)
