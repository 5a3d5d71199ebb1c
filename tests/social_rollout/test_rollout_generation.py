"""Real generation on the tiny model: batching does not change greedy results; the CLI
runs a LoRA step end to end."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from simtune.models import load_tokenizer
from simtune.recipes.social.model.rollout import SampleIndex, hf_generator, naive_rollout, tree_rollout


@pytest.fixture(scope="module")
def model_tok(tiny_model_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), load_tokenizer(str(tiny_model_dir))


class Counting:
    def __init__(self, gen):
        self.gen, self.calls = gen, []

    def __call__(self, prompts, n):
        self.calls.append((len(prompts), n))
        return self.gen(prompts, n)


def test_greedy_tree_equals_naive_token_for_token(model_tok, corpus):
    model, tok = model_tok
    index = SampleIndex.load(corpus)
    roots = index.roots[:4]
    # prompts of different lengths: batched generation left-pads them
    assert len({len(index.nodes[r].prompt) for r in roots}) > 1
    kw = dict(max_new_tokens=10, do_sample=False)
    a = Counting(hf_generator(model, tok, batch_size=4, **kw))
    b = Counting(hf_generator(model, tok, batch_size=1, **kw))
    tree = tree_rollout(index, roots, a, num_traj=1, depth_limit=1)
    naive = naive_rollout(index, roots, b, num_traj=1, depth_limit=1)
    assert a.calls[0] == (4, 1) and all(c == (1, 1) for c in b.calls) and len(b.calls) >= 4
    assert [t.summary() for t in tree] == [t.summary() for t in naive]
    ids_tree = [(n.completion.prompt_ids, n.completion.completion_ids) for t in tree for n in t.nodes]
    ids_naive = [(n.completion.prompt_ids, n.completion.completion_ids) for t in naive for n in t.nodes]
    assert ids_tree == ids_naive and all(len(c) > 0 for _, c in ids_tree)


def test_group_is_one_prompt_expanded_and_long_prompts_skipped(model_tok, corpus):
    model, tok = model_tok
    index = SampleIndex.load(corpus)
    prompts = [index.nodes[r].prompt for r in index.roots[:2]]
    g = hf_generator(model, tok, max_new_tokens=6, batch_size=8, do_sample=False)
    out = g(prompts, 3)
    assert [len(o) for o in out] == [3, 3]
    assert out[0][0].completion_ids == out[0][1].completion_ids == out[0][2].completion_ids   # greedy group
    assert all(len(c.completion_ids) <= 6 for o in out for c in o)
    torch.manual_seed(0)
    sampled = hf_generator(model, tok, max_new_tokens=6, batch_size=8, do_sample=True)(prompts, 3)
    assert [len(o) for o in sampled] == [3, 3] and len({tuple(c.completion_ids) for c in sampled[0]}) > 1
    assert all(c.prompt_ids == out[0][0].prompt_ids for c in sampled[0])
    # the completion ids decode to the text, and the prompt ids are the chat-rendered prompt
    assert out[1][0].text == tok.decode(out[1][0].completion_ids, skip_special_tokens=True)
    stats = {}
    short = min(len(o[0].prompt_ids) for o in out)
    g2 = hf_generator(model, tok, max_new_tokens=6, batch_size=8, do_sample=False, max_prompt_tokens=short, stats=stats)
    res = g2(prompts, 1)
    assert sum(r is None for r in res) == stats["prompts_too_long"] == (len(out[0][0].prompt_ids) != len(out[1][0].prompt_ids))


def test_cli_lora_step(tiny_model_dir, corpus, tmp_path):
    from simtune.cli import main

    out = tmp_path / "run"
    rc = main(["train", "social", "tree-grpo", "--model_name_or_path", str(tiny_model_dir), "--samples_dir", str(corpus),
               "--output_dir", str(out), "--max_steps", "1", "--finetuning_type", "lora", "--max_completion_length", "8",
               "--num_traj_per_root", "2", "--roots_per_update", "2", "--device", "cpu", "--temperature", "1.0"])
    assert rc == 0
    assert (out / "final_model" / "adapter_config.json").is_file()
    m = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(m) == 1 and m[0]["step"] == 1 and m[0]["nodes_d0"] == 4
    assert 4 <= m[0]["tokens_generated"] <= 4 * 8 and m[0]["train_tokens"] == m[0]["tokens_generated"]
    from safetensors.torch import load_file
    ck = load_file(str(out / "checkpoints" / "checkpoint-1" / "trainable.safetensors"))
    assert ck and all("lora_" in k for k in ck)          # only the adapter is trained and saved
    from simtune.io import OutputMarker  # both carry the marker of their command (they used to carry none)
    for folder in (out / "final_model", out / "checkpoints" / "checkpoint-1"):
        assert OutputMarker.read(folder).command == "train social tree-grpo"
    assert main(["train", "social", "tree-grpo", "--samples_dir", str(corpus), "--beta", "0.5"]) == 2


def test_disable_dropout_makes_train_mode_deterministic(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from simtune.recipes.social.model.tree_policy import completion_logps, disable_dropout

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_dropout=0.5, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()       # a non-zero adapter, so its dropout matters
    model.train()
    batch = [([5, 6, 7, 8], [9, 10, 11])]
    with torch.no_grad():
        torch.manual_seed(0)
        a = completion_logps(model, batch, 0)[0]
        b = completion_logps(model, batch, 0)[0]
        assert not torch.equal(a, b)
        assert disable_dropout(model) > 0
        assert torch.equal(completion_logps(model, batch, 0)[0], completion_logps(model, batch, 0)[0])
