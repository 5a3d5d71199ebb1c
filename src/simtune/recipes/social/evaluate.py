"""`simtune eval social`: who reacts (precision / recall / F1, and ranking quality from the
candidates' scores), which action, what text, and the share of valid JSON answers, per depth
and overall, always beside baselines that need no model (``baselines.py``: random, all,
history, profile; and on a synthetic corpus the rule that made it, ``oracle``, as the ceiling).

How the model answers (``--who``):
- ``scorer`` (the default for a model trained by `simtune train social who`, which saves
  ``who.json``): every candidate is scored in one forward pass per pool, the decision names
  those at or above their depth's threshold, and the model writes each named user's action
  and text (``who.py``);
- ``generative``: the model writes the whole JSON answer (constrained decoding keeps it
  valid); ranking metrics are then left out (there are no scores).

Answers are computed in batches and appended to a per-shard predictions file as they finish,
so an interrupted evaluation resumes where it stopped, and evaluation can be split over
processes (``torchrun`` / ``accelerate launch`` set RANK and WORLD_SIZE, or ``--shard i/n``).
The shards are merged automatically; each sample is counted exactly once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from simtune.config import BaseConfig, ConfigError, opt
from simtune.io import DataError, atomic_write_json, atomic_write_text, whole_json_objects
from simtune.metrics.paired import paired_bootstrap, paired_table
from simtune.recipes.social.prompt import parse_answer
from simtune.recipes.social.scoring import score_answer

log = logging.getLogger(__name__)

METRICS = ("valid", "precision", "recall", "f1", "action_acc", "text_sim")


@dataclass
class SocialEvalConfig(BaseConfig):
    model: Optional[str] = opt(None, "model to evaluate (folder, .gguf, 'default'); omit for baselines only")
    samples_dir: str = opt("outputs/social/samples", "output folder of `data social samples`")
    split: str = opt("val", "split to evaluate", choices=["train", "val", "test"])
    build_dir: Optional[str] = opt(None, "build folder (for the history baseline); default: the one the samples came from")
    truth: Optional[str] = opt(None, "a synthetic corpus's truth.json, for the oracle row; default: found beside the "
                                     "build's input when that is `data social synth` output")
    out: str = opt("outputs/social/eval", "output folder (predictions, eval_social.json, eval_social.md)")
    limit: Optional[int] = opt(None, "evaluate only the first N samples (by sample order); default: all", min=1)
    max_depth: Optional[int] = opt(None, "evaluate only samples of depth <= this", min=0)
    who: str = opt("auto", "scorer: candidate scores and the saved decision (who.json); generative: the model "
                           "writes the whole answer; auto: scorer when the model has a who.json",
                   choices=["auto", "scorer", "generative"])
    batch_size: int = opt(8, "samples per batch (generation batch size)", min=1)
    max_new_tokens: int = opt(256, "tokens per answer (generative)", min=1)
    reaction_tokens: int = opt(64, "tokens per chosen user's action and text (scorer)", min=8)
    reactions: bool = opt(True, "scorer: write the chosen users' reactions (false: who only; each chosen user gets "
                                "the train split's most common action and text at that depth, as the baselines do, "
                                "for corpora without texts such as who-joins cascades)")
    constrained: bool = opt(True, "constrained decoding: answers always parse and name pool candidates only "
                                  "(false: free generation, as a plain chat model would answer)")
    cascades: bool = opt(False, "simulate every root of the split from its post alone, out of every user active "
                                "before it, and compare whole cascades (size, depth, breadth, actions, who) with the "
                                "real ones (cascades.py; --limit: the first N roots)")
    depth_limit: int = opt(2, "--cascades: levels below the post to simulate", min=1)
    max_nodes: int = opt(200, "--cascades: stop a simulation at this many nodes (flagged truncated)", min=1)
    who_draw: str = opt("top", "--cascades: top = name a level's k best (k = its expected size); sample = draw k in "
                               "proportion to their probabilities (seeded by --seed)", choices=["top", "sample"])
    max_children: int = opt(100, "--cascades: at most this many reactions per node (flagged truncated)", min=1)
    candidates: Optional[int] = opt(None, "--cascades: the scorer is asked about the users a no-model rule ranks first "
                                          "(candidates.py), this many per node; default: as many as who.json was "
                                          "calibrated with; 0: everyone", min=0)
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

def aggregate(rows: list[dict], preds: dict[str, list | None], scores: dict[str, list[float]] | None = None) -> dict:
    """Mean of each metric per depth and overall; action/text over samples with a match.
    ``micro_f1`` pools true/predicted/matched counts over all samples. With ``scores``, also
    ``auc`` and ``map``: the mean within-pool ROC-AUC and average precision (who.ranking)."""
    from simtune.recipes.social.model.who import ranking
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        s = score_answer(preds[r["sample_id"]], r["true_users"], r["true_actions"], r["true_texts"])
        if scores is not None:
            truth = set(r["true_users"])
            s["auc"], s["map"] = ranking(scores[r["sample_id"]], [float(u in truth) for u in r["candidates"]])
        groups[str(r["depth"])].append(s)
        groups["all"].append(s)
    out = {}
    for key, ss in sorted(groups.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        m = {"n": len(ss)}
        for k in METRICS + (("auc", "map") if scores is not None else ()):
            vals = [s[k] for s in ss if s[k] is not None]
            m[k] = sum(vals) / len(vals) if vals else None
        tp, n_pred, n_true = (sum(s[k] for s in ss) for k in ("n_match", "n_pred", "n_true"))
        m["micro_f1"] = 2 * tp / (n_pred + n_true) if n_pred + n_true else 1.0
        m["mean_pred_users"] = n_pred / len(ss)
        m["mean_true_users"] = n_true / len(ss)
        out[key] = m
    return out


# --------------------------------------------------------------------------- model answers

class GenerativeAnswers:
    """The model writes the whole JSON answer of each prompt (batched generation)."""

    def __init__(self, model, tok, max_new_tokens: int, batch_size: int, constrained: bool):
        self.model, self.tok, self.max_new_tokens, self.batch_size = model, tok, max_new_tokens, batch_size
        self.constrained = constrained
        self.seconds: Counter = Counter()

    def __call__(self, batch: list[dict]) -> list[dict]:
        from simtune.generation import generate
        prompts = [r["prompt"] for r in batch]
        constraint = None
        if self.constrained:
            from simtune.recipes.social.model.constrained import answer_constraint_factory, eos_ids
            constraint = answer_constraint_factory(self.tok, [list(r["candidates"]) for r in batch], prompts,
                                                   max_new_tokens=self.max_new_tokens, eos_ids=eos_ids(self.model))
        t = time.perf_counter()
        outs = generate(self.model, self.tok, prompts, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                        constraint=constraint)
        self.seconds["answer"] += time.perf_counter() - t
        return [{"completion": c} for c in outs]


class ScorerAnswers:
    """Candidate scores in one forward pass per pool, the saved decision, then the chosen
    users' reactions (who.py)."""

    def __init__(self, model, tok, decision, reaction_tokens: int, batch_size: int, fixed: dict | None = None):
        self.model, self.tok, self.dec = model, tok, decision
        self.reaction_tokens, self.batch_size = reaction_tokens, batch_size
        self.fixed = fixed  # no reactions written: the train statistics (baselines.stat_for) give action and text
        self.seconds: Counter = Counter()
        self.chunked = 0

    def __call__(self, batch: list[dict]) -> list[dict]:
        from simtune.recipes.social.model.who import encode_pool, n_chunks, pool_probs, reactions
        pools = [encode_pool(self.tok, r["prompt"], r["candidates"], where=f"sample {r['sample_id']}") for r in batch]
        self.chunked += n_chunks(pools, self.dec.max_tokens)
        t = time.perf_counter()
        probs = pool_probs(self.model, self.tok, pools, self.dec)
        picks = [self.dec.choose(p, r["depth"]) for p, r in zip(probs, batch)]
        self.seconds["who"] += time.perf_counter() - t
        if self.fixed is not None:
            from simtune.recipes.social.baselines import _answer, stat_for
            answers = [json.dumps(_answer(stat_for(self.fixed, r["depth"]), [r["candidates"][i] for i in pk]))
                       for pk, r in zip(picks, batch)]
        else:
            t = time.perf_counter()
            answers = reactions(self.model, self.tok, pools, [list(r["candidates"]) for r in batch], picks,
                                max_new_tokens=self.reaction_tokens)
            self.seconds["reactions"] += time.perf_counter() - t
        return [{"completion": a, "scores": [round(x, 6) for x in p]} for a, p in zip(answers, probs)]


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


def shard_path(out: Path, i: int, n: int, stem: str = "predictions") -> Path:
    return out / f"{stem}.shard{i}-of-{n}.jsonl"


def read_predictions(path: Path) -> dict[str, dict]:
    """sample_id -> its record ({completion[, scores]}); a torn last line (a kill mid-write) is ignored."""
    done: dict[str, dict] = {}
    if path.is_file():
        for rec in whole_json_objects(path):
            done.setdefault(rec["sample_id"], rec)
    return done


def predict_shard(answer, rows: list[dict], out: Path, i: int, n: int, batch_size: int,
                  progress: bool = True, stem: str = "predictions") -> Path:
    """``answer(batch) -> records`` for this shard's rows (every n-th, offset i), skipping
    those already in the shard file; each finished batch is appended and flushed."""
    path = shard_path(out, i, n, stem)
    done = read_predictions(path)
    mine = [r for k, r in enumerate(rows) if k % n == i and r["sample_id"] not in done]
    if path.is_file() and done:
        _drop_torn_tail(path)
    from tqdm import tqdm
    bar = tqdm(total=len(mine) + len(done), initial=len(done), desc=f"  shard {i}/{n}", unit="sample",
               disable=not progress, dynamic_ncols=True, mininterval=1.0)
    with open(path, "a", encoding="utf-8") as fh:
        for start in range(0, len(mine), batch_size):
            batch = mine[start:start + batch_size]
            for r, rec in zip(batch, answer(batch)):
                fh.write(json.dumps({"sample_id": r["sample_id"], **rec}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(batch))
    bar.close()
    (out / f"{stem}.shard{i}-of-{n}.done").write_text(str(len(mine) + len(done)))
    return path


def _drop_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "wb") as fh:
            fh.write(data[: data.rfind(b"\n") + 1])


def merge_shards(out: Path, rows: list[dict], n: int, wait_s: float = 0.0, stem: str = "predictions") -> dict[str, dict]:
    """All shards' predictions, each sample exactly once; an error if any is missing."""
    deadline = time.time() + wait_s
    while not all((out / f"{stem}.shard{i}-of-{n}.done").is_file() for i in range(n)):
        if time.time() > deadline:
            missing = [i for i in range(n) if not (out / f"{stem}.shard{i}-of-{n}.done").is_file()]
            raise DataError(out, None, None, f"shards {missing} of {n} have not finished; run them, then merge")
        time.sleep(1.0)
    merged: dict[str, dict] = {}
    for i in range(n):
        for sid, rec in read_predictions(shard_path(out, i, n, stem)).items():
            merged.setdefault(sid, rec)
    want = {r["sample_id"] for r in rows}
    missing = want - set(merged)
    if missing:
        raise DataError(out, None, None, f"{len(missing)} samples have no prediction (e.g. {sorted(missing)[:3]})")
    return {sid: merged[sid] for sid in want}


# --------------------------------------------------------------------------- report

NUMBERS_ONLY_ROW = "learned, no LM: the lines' numbers alone (prior.py)"


PAIRED_NOTE = ("\n### who-F1, paired over the same samples\n\nThe model minus the strongest baseline of each depth "
               "(and minus the numbers alone, where fitted), x100, with a 95% bootstrap interval over samples:\n\n")


def paired_differences(rows: list[dict], results: dict, answers: dict, seed: int = 0) -> dict:
    """Per depth group, the model's per-sample who-F1 minus that of the strongest baseline
    there (by mean who-F1) and of the numbers alone (prior.py), with a bootstrap interval
    (``metrics.paired``): at ~300 samples a few points of who-F1 can be noise."""
    def f1s(name, group):
        return [score_answer(answers[name][r["sample_id"]], r["true_users"], r["true_actions"], r["true_texts"])["f1"]
                for r in rows if group in ("all", str(r["depth"]))]
    out = {}
    groups = [g for g in results["model"] if g != "all" or len(results["model"]) > 2]  # "all" = the one depth
    for group in groups:
        base = [k for k in results if k.startswith("baseline: ") and k in answers and group in results[k]]
        others = [max(base, key=lambda k: results[k][group]["f1"])] if base else []
        others += [NUMBERS_ONLY_ROW] if NUMBERS_ONLY_ROW in answers else []
        for other in others:
            name = f"depth {group}: model - {other}" if group != "all" else f"all depths: model - {other}"
            out[name] = paired_bootstrap(f1s("model", group), f1s(other, group), seed=seed)
    return out


# the who table's columns: (key in a results group, header, which value is best: "max", or None)
TABLE_COLUMNS = (("precision", "who-P", "max"), ("recall", "who-R", "max"), ("f1", "who-F1", "max"),
                 ("micro_f1", "micro-F1", "max"), ("auc", "AUC", "max"), ("map", "MAP", "max"),
                 ("action_acc", "action acc", "max"), ("text_sim", "text sim", "max"),
                 ("valid", "valid JSON", "max"), ("mean_pred_users", "users/answer", None))


def markdown_table(results: dict) -> str:
    """One table per depth group: rows = model and baselines, columns = metrics (TABLE_COLUMNS)."""
    def f(k, v):
        return "-" if v is None else f"{v:.2f}" if k == "mean_pred_users" else f"{v:.3f}"
    lines = []
    groups = next(iter(results.values())).keys()
    for g in groups:
        title = "all depths" if g == "all" else f"depth {g}"
        lines += [f"### {title} (n = {next(iter(results.values()))[g]['n']})", "",
                  "| answerer | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |",
                  "|---|" + "---|" * len(TABLE_COLUMNS)]
        for name, res in results.items():
            m = res.get(g)
            if m is None:
                continue
            lines.append(f"| {name} | " + " | ".join(f(k, m.get(k)) for k, _, _ in TABLE_COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def load_answerer(cfg: SocialEvalConfig, model, tok, stats: dict | None = None):
    """The model's answerer for ``cfg.who`` (auto: the scorer when the model has who.json);
    ``stats`` (train statistics) stand in for the reactions when ``cfg.reactions`` is off."""
    from simtune.recipes.social.model.decision import WhoDecision, has_decision
    folder = cfg.model if cfg.model and Path(cfg.model).is_dir() else None
    mode = cfg.who
    if mode == "auto":
        mode = "scorer" if has_decision(folder) else "generative"
    if mode == "scorer":
        if folder is None:
            raise ConfigError(f"{cfg.source_of('who')}: --who scorer needs a model folder with who.json "
                              f"(`simtune train social who` writes one), got {cfg.model!r}")
        return mode, ScorerAnswers(model, tok, WhoDecision.load(folder, model, tok), cfg.reaction_tokens,
                                   cfg.batch_size, None if cfg.reactions else stats)
    return mode, GenerativeAnswers(model, tok, cfg.max_new_tokens, cfg.batch_size, cfg.constrained)


def evaluate(cfg: SocialEvalConfig, model=None, tok=None) -> dict | None:
    """Run the evaluation; returns the results on the process that merged, else None."""
    from simtune.recipes.social.baselines import BuildActivity, baseline_predictions, train_statistics
    if cfg.cascades:
        from simtune.recipes.social.cascades import evaluate_cascades
        if model is None and cfg.model:
            from simtune.export import load_trained
            model, tok = load_trained(cfg.model, chat_template=cfg.chat_template)
        return evaluate_cascades(cfg, model, tok)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = select(load_split(cfg.samples_dir, cfg.split), cfg.max_depth, cfg.limit)
    if not rows:
        raise DataError(Path(cfg.samples_dir) / f"{cfg.split}.parquet", None, None, "no samples to evaluate")
    i, n = parse_shard(cfg.shard)
    train = load_split(cfg.samples_dir, "train", ["depth", "candidates", "true_users", "true_actions", "true_texts"])
    stats = train_statistics(train)
    results: dict[str, dict] = {}
    answers: dict[str, dict] = {}  # answerer -> sample_id -> answer, for the paired differences
    speed, mode = {}, None
    if cfg.model or model is not None:
        if model is None:
            from simtune.export import load_trained
            model, tok = load_trained(cfg.model, chat_template=cfg.chat_template)
        mode, answer = load_answerer(cfg, model, tok, stats)
        t = time.perf_counter()
        n_before = len(read_predictions(shard_path(out, i, n)))
        predict_shard(answer, rows, out, i, n, cfg.batch_size)
        made = len([k for k in range(len(rows)) if k % n == i]) - n_before
        if made:
            speed = {"samples": made, "samples_per_s": made / (time.perf_counter() - t),
                     **{f"{k}_samples_per_s": made / v for k, v in answer.seconds.items() if v}}
            if getattr(answer, "chunked", 0):
                speed["pools_scored_in_chunks"] = answer.chunked
            print("  speed: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in speed.items()))
        if i != 0:
            print(f"shard {i}/{n} done; shard 0 merges")
            return None
        recs = merge_shards(out, rows, n, wait_s=3600 if n > 1 else 0)
        scores = {sid: r["scores"] for sid, r in recs.items()} if all("scores" in r for r in recs.values()) else None
        answers["model"] = {sid: parse_answer(r["completion"]) for sid, r in recs.items()}
        results["model"] = aggregate(rows, answers["model"], scores)
        if mode == "scorer" and answer.dec.numbers_only:
            from simtune.recipes.social.model.prior import numbers_only_guesses
            g = numbers_only_guesses(rows, answer.dec, stats)
            answers[NUMBERS_ONLY_ROW] = {s: x.answer for s, x in g.items()}
            results[NUMBERS_ONLY_ROW] = aggregate(rows, answers[NUMBERS_ONLY_ROW], {s: x.scores for s, x in g.items()})
    build_dir = cfg.build_dir or _summary_field(Path(cfg.samples_dir), "build_dir")
    activity = BuildActivity(build_dir) if build_dir and Path(build_dir, "users.parquet").is_file() else None
    if activity is None:
        log.warning("no build folder found: the history, author and co-react baselines are left out (pass --build_dir)")
    truth = load_truth(cfg.truth or find_truth(build_dir))
    for name, guesses in baseline_predictions(rows, stats, activity, cfg.seed, truth).items():
        key = f"baseline: {name}" if name != "oracle" else "oracle (the rule that made the data)"
        answers[key] = {sid: g.answer for sid, g in guesses.items()}
        results[key] = aggregate(rows, answers[key], {sid: g.scores for sid, g in guesses.items()})
    paired = paired_differences(rows, results, answers, cfg.seed) if "model" in results else {}
    from simtune.recipes.social.baselines import BASELINES
    report = {"split": cfg.split, "n_samples": len(rows), "model": cfg.model, "who": mode, "reactions": cfg.reactions,
              "shards": n,
              "samples_dir": str(cfg.samples_dir), "speed": speed, "results": results, "paired": paired,
              "notes": {"f1": "mean over samples; micro_f1 pools counts",
                        "auc_map": "mean within-pool ROC-AUC and average precision of the candidates' scores",
                        "text_sim": "ROUGE-L F1 on characters", "baselines": BASELINES}}
    atomic_write_json(out / "eval_social.json", report)
    atomic_write_text(out / "eval_social.md", f"# Social evaluation: {cfg.split} split, {len(rows)} samples"
                      + (f" (who: {mode})" if mode else "") + "\n\n" + markdown_table(results)
                      + (PAIRED_NOTE + paired_table(paired) + "\n" if paired else ""))
    return report


def _summary_field(folder: Path, key: str):
    p = folder / "summary.json"
    if p.is_file():
        try:
            return json.loads(p.read_text()).get(key)
        except json.JSONDecodeError:
            return None
    return None


def find_truth(build_dir) -> str | None:
    """The truth.json of a synthetic corpus the build read, when the build kept its user ids."""
    if not build_dir or _summary_field(Path(build_dir), "pseudonymized"):
        return None
    for inp in _summary_field(Path(build_dir), "inputs") or []:
        raw = Path(inp).parent
        if (raw / "truth.json").is_file() and _summary_field(raw, "command") == "data social synth":
            return str(raw / "truth.json")
    return None


def load_truth(path) -> dict | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, None, None, f"cannot read the corpus truth: {e}") from None


def cli_eval(argv: list[str]) -> int:
    cfg = SocialEvalConfig.from_argv(argv, usage="usage: simtune eval social [--config FILE] [--key value ...]")
    if cfg is None:
        return 0
    report = evaluate(cfg)
    name = "eval_cascades" if cfg.cascades else "eval_social"
    if report:
        print((Path(cfg.out) / f"{name}.md").read_text())
        print(f"written: {Path(cfg.out) / f'{name}.json'}")
    return 0
