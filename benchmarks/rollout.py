"""Tree rollouts vs the naive per-trajectory loop, each phase in its own process (so each
peak RSS is its own).

    PYTHONPATH=src python -m benchmarks.rollout [--model default] [--traj 4] [--max_new_tokens 32] [--group 8] [--out FILE]

One root post of a synthetic corpus, ``--traj`` trajectories, depth 1, sampling at
temperature 1 (as GRPO does):
- ``tree``: :func:`tree_rollout` (level 0: the root prompt once, its samples sharing one
  prefill; level 1: every child prompt of every trajectory in one batch);
- ``naive``: :func:`naive_rollout`, one prompt per generate call, trajectory by trajectory;
- ``group``: one GRPO group alone (the root prompt, ``--group`` samples, 16 new tokens),
  its samples sharing one prefill (:func:`simtune.generation.generate_ids`) vs plain
  ``num_return_sequences`` (the prompt computed once per sample), alternated three times
  in one process (the median of each), so that a change of load hits both alike.

An untrained model seldom names real users, so depth 1 would never be reached: the level-0
answers are replaced, after being generated (their cost is real), by the root's real
answer; its reacting users that have their own sample become the depth-1 nodes. Figures:
wall time, tokens generated, tokens through the model (counted at the embedding layer:
prompts + generated), RSS after loading the model and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks import Row, device, now, parse_args, peaks, report, run_phase


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def make_corpus(work: Path) -> Path:
    """``samples/`` of a small seeded synthetic corpus with depth-1 samples."""
    from simtune.recipes.social.commands import (SocialBuildConfig, SocialSamplesConfig, SocialSynthConfig, run_build,
                                                 run_samples, run_synth)
    run_synth(SocialSynthConfig(out=str(work / "raw"), users=60, posts=80, seed=0))
    run_build(SocialBuildConfig(inputs=[str(work / "raw" / "posts.jsonl")], profiles=str(work / "raw" / "profiles.json"),
                                out=str(work / "build"), progress=False))
    run_samples(SocialSamplesConfig(build_dir=str(work / "build"), out=str(work / "samples"), max_depth=1,
                                    progress=False))
    return work / "samples"


def pick_root(index, want: int = 3):
    """The first root with at least ``want`` reacting users that have their own sample (else the most)."""
    def expandable(key):
        return sum((key[0], c["id"]) in index.nodes for c in index.nodes[key].children)
    for r in index.roots:
        if expandable(r) >= want:
            return r
    return max(index.roots, key=expandable)


def phase(mode: str, model_name: str, samples: str, traj: int, max_new_tokens: int, seed: int = 0) -> dict:
    import torch

    from simtune.models import load_model, load_tokenizer
    from simtune.recipes.social.model.rollout import SampleIndex, _root_prompt, hf_generator, naive_rollout, tree_rollout
    from simtune.recipes.social.prompt import format_answer

    tok, model = load_tokenizer(model_name), load_model(model_name, device=device())
    rss_loaded = _current_rss_mb()
    index = SampleIndex.load(samples)
    root = pick_root(index)
    s = index.nodes[root]
    real = {_root_prompt(index, root): format_answer(s.true_users, s.true_actions, s.true_texts)}
    gen = hf_generator(model, tok, max_new_tokens=max_new_tokens, batch_size=16, do_sample=True)

    def generator(prompts, n):
        out = gen(prompts, n)
        for p, group in zip(prompts, out):
            for c in (group or []) if p in real else []:
                c.text = real[p]          # the real answer, so that depth 1 is reached
        return out

    seen = [0]
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.__setitem__(0, seen[0] + i[0].numel()))
    torch.manual_seed(seed)
    rollout = naive_rollout if mode == "naive" else tree_rollout
    t = now()
    trajs = rollout(index, [root], generator, num_traj=traj, depth_limit=1)
    dt = now() - t
    nodes = [n for tr in trajs for n in tr.nodes]
    gen_tokens = sum(len(n.completion.completion_ids) for n in nodes)
    return {"seconds": dt, "nodes_d0": sum(n.depth == 0 for n in nodes), "nodes_d1": sum(n.depth == 1 for n in nodes),
            "generated_tokens": gen_tokens, "tokens_through_model": seen[0], "rss_after_load_mb": rss_loaded,
            **peaks(), "threads": torch.get_num_threads()}


def phase_group(model_name: str, samples: str, n: int, max_new_tokens: int = 16, reps: int = 3) -> dict:
    import statistics

    import torch

    from simtune.generation import generate_ids, left_pad, render_prompt
    from simtune.models import load_model, load_tokenizer
    from simtune.recipes.social.model.rollout import SampleIndex, _root_prompt

    tok, model = load_tokenizer(model_name), load_model(model_name, device=device())
    index = SampleIndex.load(samples)
    prompt = render_prompt(tok, _root_prompt(index, pick_root(index)))
    ids, mask = left_pad([tok(prompt, add_special_tokens=False)["input_ids"]], tok.pad_token_id)
    kw = dict(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
              do_sample=True, top_k=None)
    runs = {"shared": lambda: generate_ids(model, ids, mask, n, **kw),
            "plain": lambda: model.generate(input_ids=ids, attention_mask=mask, num_return_sequences=n, **kw)}
    seen = [0]
    model.get_input_embeddings().register_forward_hook(lambda m, i, o: seen.__setitem__(0, seen[0] + i[0].numel()))
    secs: dict = {k: [] for k in runs}
    tokens: dict = {}
    with torch.no_grad():
        for rep in range(reps):
            for k in (list(runs) if rep % 2 else list(runs)[::-1]):
                seen[0] = 0
                t = now()
                runs[k]()
                secs[k].append(now() - t)
                tokens[k] = seen[0]
    return {"prompt_tokens": ids.shape[1], "samples": n, "max_new_tokens": max_new_tokens,
            **{f"{k}_seconds": statistics.median(v) for k, v in secs.items()},
            **{f"{k}_all_seconds": v for k, v in secs.items()},
            **{f"{k}_tokens_through_model": v for k, v in tokens.items()}}


def _run_phase(args: list[str]) -> dict:
    return run_phase("benchmarks.rollout", args)


def run_all(model: str, traj: int, max_new_tokens: int, group: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="simtune-bench-rollout-") as work:  # removed after
        return _run_all(make_corpus(Path(work)), model, traj, max_new_tokens, group)


def _run_all(samples: Path, model: str, traj: int, max_new_tokens: int, group: int) -> dict:
    res: dict = {"model": model, "traj": traj, "depth_limit": 1, "max_new_tokens": max_new_tokens}
    for mode in ("naive", "tree"):
        res[mode] = _run_phase([mode, "--model", model, "--samples", str(samples), "--traj", str(traj),
                                "--max_new_tokens", str(max_new_tokens)])
    res["group"] = _run_phase(["group", "--model", model, "--samples", str(samples), "--group", str(group)])
    res["summary"] = {"tree_speedup_vs_naive": res["naive"]["seconds"] / res["tree"]["seconds"],
                      "shared_prefill_speedup": res["group"]["plain_seconds"] / res["group"]["shared_seconds"]}
    return res


def rows(res: dict) -> list[Row]:
    """The rows of the combined table (benchmarks.Row)."""
    t, n, g, s = res["tree"], res["naive"], res["group"], res["summary"]
    grp = f"{g['prompt_tokens']}-token root prompt x {g['samples']} samples, {g['max_new_tokens']} new tokens, median of 3"
    what = f"1 root x {res['traj']} trajectories, depth 1 ({t['nodes_d0']}+{t['nodes_d1']} nodes), {res['max_new_tokens']} new tokens"
    return [Row("rollout", f"tree rollout s vs naive per-trajectory loop [{what}]", f"{t['seconds']:.1f}", f"{n['seconds']:.1f}",
             f"{s['tree_speedup_vs_naive']:.2f}x", ">= 1.5x"),
            Row("rollout_tokens", "rollout generated tokens (tree vs naive)", f"{t['generated_tokens']}", f"{n['generated_tokens']}", "", ""),
            Row("rollout_rss", "rollout peak RSS MB (tree vs naive; model loaded: "
             f"{t['rss_after_load_mb']:.0f})", f"{t['peak_rss_mb']:.0f}", f"{n['peak_rss_mb']:.0f}", "", ""),
            Row("prefill", f"GRPO group generation s, one shared prefill vs num_return_sequences [{grp}]",
             f"{g['shared_seconds']:.1f}", f"{g['plain_seconds']:.1f}", f"{s['shared_prefill_speedup']:.2f}x", ""),
            Row("prefill_tokens", "group generation: tokens through the model (shared prefill vs num_return_sequences)",
             f"{g['shared_tokens_through_model']}", f"{g['plain_tokens_through_model']}", "", "")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase")
    ap.add_argument("--model", default="default")
    ap.add_argument("--samples")
    ap.add_argument("--traj", type=int, default=4)
    ap.add_argument("--max_new_tokens", type=int, default=32)
    ap.add_argument("--group", type=int, default=8, help="samples of the group-generation line")
    a = parse_args(ap, argv, "bench_results/rollout.json")
    if a.phase == "group":
        print(json.dumps(phase_group(a.model, a.samples, a.group)))
        return 0
    if a.phase:
        print(json.dumps(phase(a.phase, a.model, a.samples, a.traj, a.max_new_tokens)))
        return 0
    res = run_all(a.model, a.traj, a.max_new_tokens, a.group)
    return report(res, rows(res), a.out)


if __name__ == "__main__":
    sys.exit(main())
