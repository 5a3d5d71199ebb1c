"""`simtune eval social`: who reacts (precision / recall / F1), which action, what text, and
the share of valid JSON answers, per depth and overall, always beside baselines that need
no model:

- ``random``: each candidate chosen independently with the true rate of its depth
  (reacting users / pool size, measured on the train split), seeded;
- ``all``: every candidate;
- ``history``: the ``m`` candidates most active before the sample's time (from the build's
  activity index), ``m`` = the mean number of true reactors at that depth in train;
- ``profile``: the ``m`` candidates whose profile line in the prompt shares the most words
  with the post (and the thread), each shared word weighted by its inverse document
  frequency over the evaluated prompts' candidate lines (words: lower-case runs of 2+
  ASCII letters or digits; each CJK character is a word); ties in pool order. It reads
  only the prompt: what a content-based recommender would do with the same input.
Baseline answers use the train split's most common action at that depth and its most common
text for that action, so their action and text scores are defined too.

Model answers are generated in batches and appended to a per-shard predictions file as
they finish, so an interrupted evaluation resumes where it stopped, and evaluation can be
split over processes (``torchrun`` / ``accelerate launch`` set RANK and WORLD_SIZE, or
``--shard i/n``). The shards are merged automatically; each sample is counted exactly once.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from simtune.config import BaseConfig, ConfigError, opt
from simtune.io import DataError, atomic_write_json, atomic_write_text
from simtune.recipes.social.samples import parse_answer
from simtune.recipes.social.scoring import score_answer

log = logging.getLogger(__name__)

METRICS = ("valid", "precision", "recall", "f1", "action_acc", "text_sim")


@dataclass
class SocialEvalConfig(BaseConfig):
    model: Optional[str] = opt(None, "model to evaluate (folder, .gguf, 'default'); omit for baselines only")
    samples_dir: str = opt("outputs/social/samples", "output folder of `data social samples`")
    split: str = opt("val", "split to evaluate", choices=["train", "val", "test"])
    build_dir: Optional[str] = opt(None, "build folder (for the history baseline); default: the one the samples came from")
    out: str = opt("outputs/social/eval", "output folder (predictions, eval_social.json, eval_social.md)")
    limit: Optional[int] = opt(None, "evaluate only the first N samples (by sample order)", min=1)
    max_depth: Optional[int] = opt(None, "evaluate only samples of depth <= this", min=0)
    batch_size: int = opt(8, "generation batch size", min=1)
    max_new_tokens: int = opt(256, "tokens per answer", min=1)
    constrained: bool = opt(True, "constrained decoding: answers always parse and name pool candidates only "
                                  "(false: free generation, as a plain chat model would answer)")
    shard: Optional[str] = opt(None, "i/n: evaluate shard i of n (default: from RANK/WORLD_SIZE)")
    seed: int = opt(0, "seed of the random baseline")
    chat_template: Optional[str] = opt(None, "fallback chat template name for tokenizers without one")


# --------------------------------------------------------------------------- data

def load_split(samples_dir: str | os.PathLike, split: str, columns: list[str] | None = None) -> list[dict]:
    import pyarrow.parquet as pq
    path = Path(samples_dir) / f"{split}.parquet"
    if not path.is_file():
        raise DataError(path, None, None, f"no '{split}' split here (run `simtune data social samples` first)")
    return pq.read_table(path, columns=columns).to_pylist()


def select(rows: list[dict], max_depth: int | None, limit: int | None) -> list[dict]:
    if max_depth is not None:
        rows = [r for r in rows if r["depth"] <= max_depth]
    return rows[:limit] if limit else rows


# --------------------------------------------------------------------------- aggregation

def aggregate(rows: list[dict], preds: dict[str, list | None]) -> dict:
    """Mean of each metric per depth and overall; action/text over samples with a match.
    ``micro_f1`` pools true/predicted/matched counts over all samples."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        s = score_answer(preds[r["sample_id"]], r["true_users"], r["true_actions"], r["true_texts"])
        groups[str(r["depth"])].append(s)
        groups["all"].append(s)
    out = {}
    for key, scores in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        m = {"n": len(scores)}
        for k in METRICS:
            vals = [s[k] for s in scores if s[k] is not None]
            m[k] = sum(vals) / len(vals) if vals else None
        tp, n_pred, n_true = (sum(s[k] for s in scores) for k in ("n_match", "n_pred", "n_true"))
        m["micro_f1"] = 2 * tp / (n_pred + n_true) if n_pred + n_true else 1.0
        m["mean_pred_users"] = n_pred / len(scores)
        m["mean_true_users"] = n_true / len(scores)
        out[key] = m
    return out


# --------------------------------------------------------------------------- baselines

def train_statistics(train_rows: list[dict]) -> dict:
    """Per depth: true rate, mean reactors, majority action, most common text per action."""
    by_d: dict[int, dict] = defaultdict(lambda: {"true": 0, "pool": 0, "n": 0, "actions": Counter(),
                                                  "texts": defaultdict(Counter)})
    for r in train_rows:
        s = by_d[r["depth"]]
        s["true"] += len(r["true_users"])
        s["pool"] += len(r["candidates"])
        s["n"] += 1
        for a, t in zip(r["true_actions"], r["true_texts"]):
            s["actions"][a] += 1
            s["texts"][a][t] += 1
    stats = {}
    for d, s in by_d.items():
        action = s["actions"].most_common(1)[0][0] if s["actions"] else "comment"
        text = s["texts"][action].most_common(1)[0][0] if s["texts"][action] else ""
        stats[d] = {"rate": s["true"] / s["pool"] if s["pool"] else 0.0, "mean_true": s["true"] / max(s["n"], 1),
                    "action": action, "text": text}
    return stats


def _stat_for(stats: dict, depth: int) -> dict:
    if depth in stats:
        return stats[depth]
    if not stats:
        return {"rate": 0.0, "mean_true": 1.0, "action": "comment", "text": ""}
    return stats[max(d for d in stats if d <= depth) if any(d <= depth for d in stats) else min(stats)]


def _answer(st: dict, users) -> list[dict]:
    """A baseline's answer: ``users`` with the depth's majority action and its most common text."""
    return [{"user": u, "action": st["action"], "text": st["text"]} for u in users]


def baseline_predictions(rows: list[dict], stats: dict, activity=None, seed: int = 0) -> dict[str, dict]:
    """``{baseline name: {sample_id: answer}}``; ``activity(candidates, t) -> counts`` for
    history; ``profile`` where the rows have prompts that :func:`profile_predictions` reads."""
    rng = random.Random(seed)
    out: dict[str, dict] = {"random": {}, "all": {}}
    if activity is not None:
        out["history"] = {}
    for r in rows:
        st = _stat_for(stats, r["depth"])
        ans = lambda users: _answer(st, users)  # noqa: E731
        cands = list(r["candidates"])
        out["random"][r["sample_id"]] = ans([u for u in cands if rng.random() < st["rate"]])
        out["all"][r["sample_id"]] = ans(cands)
        if activity is not None:
            counts = activity(cands, r["time"])
            m = max(1, round(st["mean_true"]))
            ranked = sorted(range(len(cands)), key=lambda i: (-counts[i], i))[:m]
            out["history"][r["sample_id"]] = ans([cands[i] for i in ranked])
    profile = profile_predictions(rows, stats) if rows and "prompt" in rows[0] else None
    if profile is not None:
        out["profile"] = profile
    return out


_WORD = re.compile(r"[a-z0-9]{2,}|[\u3400-\u9fff\uf900-\ufaff]")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def profile_predictions(rows: list[dict], stats: dict) -> dict | None:
    """The ``profile`` baseline (module docstring): ``{sample_id: answer}``, or None when a
    prompt is not one that :func:`build_prompt` writes (the candidates' lines are unknown)."""
    from simtune.io import DataError
    from simtune.recipes.social.rollout import parse_prompt

    parsed = []
    df: Counter = Counter()
    n_lines = 0
    for r in rows:
        try:
            p = parse_prompt(r["prompt"], f"sample {r['sample_id']}")
        except DataError as e:
            log.warning("profile baseline left out: %s", e)
            return None
        lines = [(uid, _words(line)) for uid, line in p["candidates"]]
        for _, w in lines:
            df.update(w)
        n_lines += len(lines)
        query = _words(" ".join([p["post_text"], *(c.get("text") or "" for c in p["chain"])]))
        parsed.append((r, lines, query))
    idf = {w: math.log((n_lines + 1) / (c + 1)) for w, c in df.items()}
    out = {}
    for r, lines, query in parsed:
        st = _stat_for(stats, r["depth"])
        score = [sum(idf[w] for w in ws & query) for _, ws in lines]
        m = max(1, round(st["mean_true"]))
        top = sorted(range(len(lines)), key=lambda i: (-score[i], i))[:m]
        out[r["sample_id"]] = _answer(st, [lines[i][0] for i in sorted(top)])
    return out


def history_activity(build_dir: str | os.PathLike):
    from simtune.recipes.social.samples import UserTable
    users = UserTable(build_dir)

    def activity(cands, t):
        idx = [users.pos.get(u, -1) for u in cands]
        known = [i for i in idx if i >= 0]
        counts = dict(zip(known, users.acts_before(known, int(t)).tolist())) if known else {}
        return [counts.get(i, 0) if i >= 0 else 0 for i in idx]
    return activity


# --------------------------------------------------------------------------- model predictions

def parse_shard(shard: str | None) -> tuple[int, int]:
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ConfigError(f"--shard must look like i/n (e.g. 0/2), got {shard!r}") from None
    else:
        i, n = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not (0 <= i < n):
        raise ConfigError(f"shard {i}/{n}: i must be in [0, n)")
    return i, n


def shard_path(out: Path, i: int, n: int) -> Path:
    return out / f"predictions.shard{i}-of-{n}.jsonl"


def read_predictions(path: Path) -> dict[str, str]:
    """sample_id -> completion; a torn last line (a kill mid-write) is ignored."""
    done: dict[str, str] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done.setdefault(rec["sample_id"], rec["completion"])
    return done


def predict_shard(model, tok, rows: list[dict], out: Path, i: int, n: int, batch_size: int,
                  max_new_tokens: int, progress: bool = True, constrained: bool = False) -> Path:
    """Generate answers for this shard's rows (every n-th, offset i), skipping those
    already in the shard file; each finished batch is appended and flushed."""
    from simtune.generation import generate
    path = shard_path(out, i, n)
    done = read_predictions(path)
    mine = [r for k, r in enumerate(rows) if k % n == i and r["sample_id"] not in done]
    if path.is_file() and done:
        _drop_torn_tail(path)
    t0, made = time.time(), 0
    with open(path, "a", encoding="utf-8") as fh:
        for start in range(0, len(mine), batch_size):
            batch = mine[start:start + batch_size]
            prompts = [r["prompt"] for r in batch]
            constraint = None
            if constrained:
                from simtune.recipes.social.constrained import answer_constraint_factory, eos_ids
                constraint = answer_constraint_factory(tok, [list(r["candidates"]) for r in batch], prompts,
                                                       max_new_tokens=max_new_tokens, eos_ids=eos_ids(model))
            outs = generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            constraint=constraint)
            for r, c in zip(batch, outs):
                fh.write(json.dumps({"sample_id": r["sample_id"], "completion": c}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            made += len(batch)
            if progress:
                rate = made / max(time.time() - t0, 1e-9)
                print(f"  shard {i}/{n}: {made + len(done)}/{len(mine) + len(done)} samples ({rate:.2f}/s)", flush=True)
    (out / f"shard{i}-of-{n}.done").write_text(str(len(mine) + len(done)))
    return path


def _drop_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "wb") as fh:
            fh.write(data[: data.rfind(b"\n") + 1])


def merge_shards(out: Path, rows: list[dict], n: int, wait_s: float = 0.0) -> dict[str, str]:
    """All shards' predictions, each sample exactly once; an error if any is missing."""
    deadline = time.time() + wait_s
    while not all((out / f"shard{i}-of-{n}.done").is_file() for i in range(n)):
        if time.time() > deadline:
            missing = [i for i in range(n) if not (out / f"shard{i}-of-{n}.done").is_file()]
            raise DataError(out, None, None, f"shards {missing} of {n} have not finished; run them, then merge")
        time.sleep(1.0)
    merged: dict[str, str] = {}
    for i in range(n):
        for sid, c in read_predictions(shard_path(out, i, n)).items():
            merged.setdefault(sid, c)
    want = {r["sample_id"] for r in rows}
    missing = want - set(merged)
    if missing:
        raise DataError(out, None, None, f"{len(missing)} samples have no prediction (e.g. {sorted(missing)[:3]})")
    return {sid: merged[sid] for sid in want}


# --------------------------------------------------------------------------- report

def markdown_table(results: dict) -> str:
    """One table per depth group: rows = model and baselines, columns = metrics."""
    def f(v):
        return "-" if v is None else f"{v:.3f}"
    lines = []
    groups = next(iter(results.values())).keys()
    for g in groups:
        title = "all depths" if g == "all" else f"depth {g}"
        lines += [f"### {title} (n = {next(iter(results.values()))[g]['n']})", "",
                  "| answerer | who-P | who-R | who-F1 | micro-F1 | action acc | text sim | valid JSON | users/answer |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, res in results.items():
            m = res.get(g)
            if m is None:
                continue
            lines.append(f"| {name} | {f(m['precision'])} | {f(m['recall'])} | {f(m['f1'])} | {f(m['micro_f1'])} | "
                         f"{f(m['action_acc'])} | {f(m['text_sim'])} | {f(m['valid'])} | {m['mean_pred_users']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def evaluate(cfg: SocialEvalConfig, model=None, tok=None) -> dict | None:
    """Run the evaluation; returns the results on the process that merged, else None."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = select(load_split(cfg.samples_dir, cfg.split), cfg.max_depth, cfg.limit)
    if not rows:
        raise DataError(Path(cfg.samples_dir) / f"{cfg.split}.parquet", None, None, "no samples to evaluate")
    i, n = parse_shard(cfg.shard)
    results: dict[str, dict] = {}
    if cfg.model or model is not None:
        if model is None:
            from simtune.models import load_model, load_tokenizer
            tok = load_tokenizer(cfg.model, chat_template=cfg.chat_template)
            model = load_model(cfg.model, device="auto")
        predict_shard(model, tok, rows, out, i, n, cfg.batch_size, cfg.max_new_tokens, constrained=cfg.constrained)
        if i != 0:
            print(f"shard {i}/{n} done; shard 0 merges")
            return None
        completions = merge_shards(out, rows, n, wait_s=3600 if n > 1 else 0)
        results["model"] = aggregate(rows, {sid: parse_answer(c) for sid, c in completions.items()})
    train = load_split(cfg.samples_dir, "train", ["depth", "candidates", "true_users", "true_actions", "true_texts"])
    stats = train_statistics(train)
    build_dir = cfg.build_dir or _build_dir_of(cfg.samples_dir)
    activity = history_activity(build_dir) if build_dir and Path(build_dir, "users.parquet").is_file() else None
    if activity is None:
        log.warning("no build folder found: the history baseline is left out (pass --build_dir)")
    for name, preds in baseline_predictions(rows, stats, activity, cfg.seed).items():
        results[f"baseline: {name}"] = aggregate(rows, preds)
    report = {"split": cfg.split, "n_samples": len(rows), "model": cfg.model, "shards": n,
              "samples_dir": str(cfg.samples_dir), "results": results,
              "notes": {"f1": "mean over samples; micro_f1 pools counts", "text_sim": "ROUGE-L F1 on characters",
                        "baselines": __doc__.split("- ``random``")[1].split("Model answers")[0].strip()}}
    atomic_write_json(out / "eval_social.json", report)
    atomic_write_text(out / "eval_social.md", f"# Social evaluation: {cfg.split} split, {len(rows)} samples\n\n"
                      + markdown_table(results))
    return report


def _build_dir_of(samples_dir) -> str | None:
    p = Path(samples_dir) / "summary.json"
    if p.is_file():
        try:
            return json.loads(p.read_text()).get("build_dir")
        except json.JSONDecodeError:
            return None
    return None


def cli_eval(argv: list[str]) -> int:
    cfg = SocialEvalConfig.from_argv(argv, usage="usage: simtune eval social [--config FILE] [--key value ...]")
    if cfg is None:
        return 0
    report = evaluate(cfg)
    if report:
        print((Path(cfg.out) / "eval_social.md").read_text())
        print(f"written: {Path(cfg.out) / 'eval_social.json'}")
    return 0
