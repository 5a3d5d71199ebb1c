"""Who-F1 of the levers tried on the social model, side by side on the demo's data: the
generative JSON answer with and without its variations, and the candidate scorer.

    PYTHONPATH=src python -m benchmarks.who_levers [--seed 0] [--only sft,labels,...] [--out FILE]

Every arm is trained on the demo's synthetic corpus (300 users, 400 posts, ``--seed``) and
evaluated on all its depth-0 val samples (``eval social --max_depth 0``), beside the
baselines and the oracle of that same evaluation:
- ``sft``: SFT of the generative answer as the demo did before the scorer (the oldest 160
  depth-0 train samples, layers 18-29, lr 3e-4, one epoch), constrained decoding;
- ``sft_who_only``: the same with every text left out of the answers (``"text": ""``): all
  of the loss on who and the action, i.e. the user tokens' weight taken to its limit;
- ``sft_labels``: the same with short candidate labels (``c1``, ``c2``, ...) for the raw ids
  in prompts and answers (the evaluation maps them back);
- ``grpo``: level-wise GRPO through TRL from the ``sft`` model, rewards format + who
  (``social_format``, ``social_who``), ``--grpo_steps`` steps on depth-0 prompts;
- ``scorer``: `simtune train social who` with the demo's settings.
Slow on a CPU (about an hour for all arms); not part of `make bench`.
"""
from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from benchmarks import Row, parse_args, report

ARMS = ("sft", "sft_who_only", "sft_labels", "grpo", "scorer")


def relabel(rows: list[dict]) -> list[dict]:
    """Rows with candidates ``c1..cN`` (pool order) for their ids, in prompt, answer and truth."""
    from simtune.recipes.social.prompt import format_answer, parse_answer
    out = []
    for r in rows:
        lab = {u: f"c{k + 1}" for k, u in enumerate(r["candidates"])}
        lines = [(lab[ln.split(": ", 1)[0]] + ": " + ln.split(": ", 1)[1]) if ln.split(": ", 1)[0] in lab else ln
                 for ln in r["prompt"].split("\n")]
        ans = parse_answer(r["response"]) or []
        out.append({**r, "prompt": "\n".join(lines), "candidates": [lab[u] for u in r["candidates"]],
                    "true_users": [lab[u] for u in r["true_users"]],
                    "response": format_answer([lab[e["user"]] for e in ans], [e["action"] for e in ans],
                                              [e["text"] for e in ans])})
    return out


def write_samples(rows_by_split: dict, src: Path, dst: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    dst.mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        schema = pq.read_schema(src / f"{split}.parquet")
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), dst / f"{split}.parquet")
    (dst / "summary.json").write_text((src / "summary.json").read_text())
    return dst


def sft(train_rows: list[dict], work: Path, name: str, seed: int) -> Path:
    from simtune.stage_configs import SFTConfig
    from simtune.data.formats import dump_jsonl
    from simtune.stages import run_stage
    rows = sorted((r for r in train_rows if r["depth"] == 0), key=lambda r: r["time"])[:160]
    f = dump_jsonl(({"prompt": r["prompt"], "response": r["response"]} for r in rows), work / f"{name}.jsonl")
    cfg = SFTConfig.load(None, [], train_file=str(f), num_train_epochs=1.0, learning_rate=3e-4,
                         per_device_train_batch_size=4, max_length=640, finetuning_type="freeze",
                         freeze_first_n_layers=18, lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=5,
                         save_steps=1000, recipe="levers", run_name=name, output_root=str(work), report_to=["none"],
                         seed=seed)
    return run_stage("sft", cfg).final_model_dir


def grpo(model_dir: Path, grpo_dir: Path, work: Path, steps: int, seed: int) -> Path:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from simtune.stage_configs import GRPOConfig
    from simtune.stages import run_stage
    rows = pq.read_table(grpo_dir / "train.parquet")
    pq.write_table(rows.filter(pc.equal(rows["depth"], 0)), work / "grpo_depth0.parquet")
    cfg = GRPOConfig.load(None, [], model_name_or_path=str(model_dir), train_file=str(work / "grpo_depth0.parquet"),
                          reward_funcs=["social_format", "social_who"], reward_weights=[0.2, 1.0],
                          num_generations=4, per_device_train_batch_size=4, max_completion_length=200,
                          temperature=0.9, learning_rate=2e-5, max_steps=steps, beta=0.0, finetuning_type="freeze",
                          freeze_first_n_layers=18, save_steps=1000, logging_steps=1, recipe="levers",
                          run_name="grpo", output_root=str(work), report_to=["none"], seed=seed)
    return run_stage("grpo", cfg).final_model_dir


def evaluate(model_dir: Path, samples: Path, build: Path, out: Path, who: str) -> dict:
    from simtune.recipes.social.evaluate import SocialEvalConfig
    from simtune.recipes.social.evaluate import evaluate as run
    cfg = SocialEvalConfig.load(None, [], model=str(model_dir), samples_dir=str(samples), build_dir=str(build),
                                out=str(out), max_depth=0, who=who, batch_size=8, max_new_tokens=256)
    t = time.time()
    rep = run(cfg)
    return {"results": {k: v["0"] for k, v in rep["results"].items()}, "eval_s": time.time() - t,
            "speed": rep["speed"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=",".join(ARMS))
    ap.add_argument("--grpo_steps", type=int, default=40)
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    a = parse_args(ap, argv, "bench_results/who_levers.json")
    arms = a.only.split(",")
    from simtune.recipes.social.evaluate import load_split
    from simtune.recipes.social.pipeline import prepare
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        data = prepare(work / "data", users=300, posts=400, seed=a.seed)
        train, val = load_split(data.samples, "train"), load_split(data.samples, "val")
        res: dict = {}

        def record(name, model_dir, samples, who, t0):
            train_s = time.time() - t0
            res[name] = {"train_s": train_s, **evaluate(model_dir, samples, data.build, work / f"eval_{name}", who)}
            m = res[name]["results"]
            print(f"{name}: depth-0 who-F1 {m['model']['f1']:.3f} (profile {m['baseline: profile']['f1']:.3f}, "
                  f"oracle {next(v['f1'] for k, v in m.items() if k.startswith('oracle')):.3f}); "
                  f"train {train_s:.0f}s, eval {res[name]['eval_s']:.0f}s", flush=True)

        if "sft" in arms or "grpo" in arms:
            t0 = time.time()
            sft_dir = sft(train, work, "sft", a.seed)
            record("sft", sft_dir, data.samples, "generative", t0)
            if "grpo" in arms:
                t0 = time.time()
                record("grpo", grpo(sft_dir, data.grpo, work, a.grpo_steps, a.seed), data.samples, "generative", t0)
        if "sft_who_only" in arms:
            t0 = time.time()
            blank = [{**r, "response": re.sub(r'"text":"(?:[^"\\]|\\.)*"', '"text":""', r["response"])} for r in train]
            record("sft_who_only", sft(blank, work, "sft_who_only", a.seed), data.samples, "generative", t0)
        if "sft_labels" in arms:
            t0 = time.time()
            lab = write_samples({"train": relabel(train), "val": relabel(val)}, data.samples, work / "samples_labels")
            record("sft_labels", sft(relabel(train), work, "sft_labels", a.seed), lab, "generative", t0)
        if "scorer" in arms:
            from simtune.recipes.social.model.who_train import WhoTrainConfig, train as train_who
            t0 = time.time()
            cfg = WhoTrainConfig.load(None, [], samples_dir=str(data.samples), max_samples=360, output_root=str(work),
                                      report_to=["none"], seed=a.seed, save_steps=1000)
            record("scorer", train_who(cfg).final_model_dir, data.samples, "scorer", t0)
    return report({"seed": a.seed, "arms": res}, rows(res), a.out)


def rows(res: dict) -> list[Row]:
    """One row per arm: its depth-0 who-F1 beside the strongest baseline of the same evaluation."""
    out = []
    for name, r in res.items():
        m = r["results"]
        base = max((k for k in m if k.startswith("baseline: ")), key=lambda k: m[k]["f1"])
        out.append(Row(f"who_{name}", f"depth-0 who-F1, {name} vs the strongest baseline ({base[10:]}); train "
                                      f"{r['train_s']:.0f} s", f"{m['model']['f1']:.3f}", f"{m[base]['f1']:.3f}",
                       f"{m['model']['f1'] - m[base]['f1']:+.3f}", "> 0"))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
