"""`simtune demo`: the main job end to end on the embedded default model and data."""
from __future__ import annotations

import argparse
import time


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="simtune demo", description=__doc__)
    ap.add_argument("--model", default="default")
    a = ap.parse_args(argv)
    from simtune.models import load_model, load_tokenizer
    t = time.time()
    tok = load_tokenizer(a.model)
    model = load_model(a.model, device="auto")
    print(f"loaded {a.model} in {time.time() - t:.1f}s")
    msgs = [{"role": "user", "content": "In one sentence: why do people repost a post?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True).to(model.device)
    out = model.generate(**ids, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
    print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return 0
