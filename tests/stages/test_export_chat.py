"""simtune export (LoRA merge: the merged model's logits equal the adapter model's) and
simtune chat (the conversation is kept, /reset clears it, /exit and EOF end it)."""
import io
import json

import pytest
import torch

from simtune.cli import main
from simtune.export import export_model, load_trained

from testutils import build_tiny_model


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model_dir):
    """A LoRA adapter with non-zero (random) weights on the tiny model, saved with its tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                                           task_type="CAUSAL_LM"))
    peft.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


def batch(tok):
    enc = tok(["user 1 sees a post about 猫", "hello there, how are you today?"], return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def test_export_merge_lora_logits_match(adapter_dir, tiny_model_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM
    peft_model, tok = load_trained(adapter_dir, device="cpu", dtype="float32")
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    out = tmp_path / "merged"
    assert main(["export", "--model", str(adapter_dir), "--out", str(out), "--merge-lora"]) == 0
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    assert not (out / "adapter_config.json").exists()
    assert not list(tmp_path.glob(".tmp-*"))  # written atomically, nothing left behind
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids, mask = batch(tok)
    with torch.no_grad():
        want = peft_model(input_ids=ids, attention_mask=mask).logits
        got = merged(input_ids=ids, attention_mask=mask).logits
        plain = base(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert (plain - want).abs().max() > 1e-2  # the adapter really changes the outputs


def test_export_errors(adapter_dir, tmp_path, capsys):
    assert main(["export", "--model", str(adapter_dir), "--out", str(tmp_path / "x")]) == 2
    assert "is a LoRA adapter folder; pass --merge-lora" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert main(["export", "--model", str(adapter_dir), "--out", str(busy), "--merge-lora"]) == 2
    assert "holds keep.txt, and no .simtune-output.json shows" in capsys.readouterr().err
    assert (busy / "keep.txt").read_text() == "mine"
    assert main(["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "y")]) == 2


def test_export_full_model_resaves(tiny_model_dir, tmp_path):
    out = export_model(tiny_model_dir, tmp_path / "copy")
    from safetensors.torch import load_file
    a, b = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_chat_loop_keeps_conversation(tiny_model_dir, monkeypatch):
    import simtune.chat as chat
    model, tok = load_trained(tiny_model_dir, device="cpu")
    seen = []
    real = chat.generate

    def spy(model, tok, prompts, **kw):
        seen.append([dict(m) for m in prompts[0]])
        return real(model, tok, prompts, **kw)

    monkeypatch.setattr(chat, "generate", spy)
    stdin = io.StringIO("first question\n\nsecond question\n/reset\nthird\n/exit\nnever read\n")
    stdout = io.StringIO()
    history = chat.chat_loop(model, tok, system="be brief", max_new_tokens=3, stdin=stdin, stdout=stdout)
    assert [[m["content"] for m in s if m["role"] != "assistant"] for s in seen] == [
        ["be brief", "first question"],
        ["be brief", "first question", "second question"],  # the earlier turn is kept
        ["be brief", "third"],  # /reset cleared it
    ]
    assert seen[1][2]["role"] == "assistant"  # the first reply is part of the second prompt
    assert [m["content"] for m in history if m["role"] == "user"] == ["third"]
    lines = stdout.getvalue().splitlines()
    assert "(conversation reset)" in lines and len(seen) == 3


def test_chat_cli_eof_ends(tiny_model_dir, monkeypatch, capsys):
    import simtune.chat as chat
    calls = []
    real = chat.generate
    monkeypatch.setattr(chat, "generate", lambda *a, **kw: calls.append(a[2]) or real(*a, **kw))
    monkeypatch.setattr("sys.stdin", io.StringIO("hello\nagain\n"))  # no /exit: EOF ends
    assert main(["chat", str(tiny_model_dir), "--system", "s", "--max_new_tokens", "2", "--device", "cpu"]) == 0
    assert len(calls) == 2 and calls[1][0][0] == {"role": "system", "content": "s"}
    assert [m["content"] for m in calls[1][0] if m["role"] == "user"] == ["hello", "again"]
