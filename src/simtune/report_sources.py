"""What the HTML report page (:mod:`simtune.report_html`) reads from an experiment folder, as
named records. Every reader takes ``notes`` (a list) and, when its optional file is absent or
unreadable, says so there in one line and returns None (or nothing): the page leaves that
part out, never crashes on it. The file shapes are those their writers give them:

- ``config.yaml`` (experiment.py), ``train_result.json`` and ``data_summary.json`` (the
  trainers), ``timings.json`` (``simtune demo``), ``metrics.jsonl`` (report.read_metrics);
- social: ``eval/eval_social.json`` and ``eval/predictions.shard*-of-*.jsonl`` (evaluate.py)
  with the samples' Parquet split and ``summary.json``; ``cascades/eval_cascades.json`` and
  ``cascades/cascades.shard*-of-*.jsonl`` (cascades.py) with the build's ``trees.jsonl``;
- reviews: ``eval/eval_report.json`` and ``eval/predictions.jsonl`` with the run's
  ``<split>_samples.json`` (reviews/commands.py ``evaluate_run``), ``ablation.json`` (``ablate``);
- math: ``eval_math.json``, ``eval_math_samples.jsonl``, ``eval_math_compare.json`` (math/
  evaluate.py, commands.py) in the folder or its ``eval/``; GRPO's ``samples/completions_step*.jsonl``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import yaml

from simtune.io import DataError, whole_json_objects
from simtune.report_svg import Tree, flatten

EXAMPLES = 3            # examples shown per kind (reviews, math completions, cascades)
EXAMPLES_PER_DEPTH = 2  # social samples shown per depth
POOL_LINES = 25         # candidates shown per pool (best scores first; every true or chosen one too)


def load_json(exp: Path, rel: str, notes: list[str], why: str | None = None):
    """``exp/rel`` as JSON; None with a note when it is absent (``why`` says what is then left
    out; no note without it) or unreadable."""
    path = exp / rel
    if not path.is_file():
        if why:
            notes.append(f"no {rel}: {why}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        notes.append(f"{rel} could not be read ({e}): left out")
        return None


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file; a torn or non-object line is skipped."""
    return list(whole_json_objects(path))


def first_found(exp: Path, rels: list[str]) -> str | None:
    return next((r for r in rels if (exp / r).is_file()), None)


# the evaluations the page shows (a folder with one of them and no metrics.jsonl gets the page alone)
EVALUATIONS = ("eval/eval_social.json", "cascades/eval_cascades.json", "eval/eval_report.json", "eval_report.json",
               "ablation.json", "eval/eval_math.json", "eval_math.json", "eval/eval_math_compare.json",
               "eval_math_compare.json")


def has_evaluation(exp: Path) -> bool:
    return first_found(exp, list(EVALUATIONS)) is not None


# --------------------------------------------------------------------------- summary

def read_config(exp: Path, notes: list[str]) -> dict | None:
    path = exp / "config.yaml"
    if not path.is_file():
        notes.append("no config.yaml: the settings are left out")
        return None
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        notes.append(f"config.yaml could not be read ({e}): the settings are left out")
        return None
    return cfg if isinstance(cfg, dict) else None


class Timing(NamedTuple):
    what: str
    seconds: float | None
    detail: str = ""


def timings(exp: Path, wall_time_s: float | None, notes: list[str]) -> list[Timing]:
    """``simtune demo``'s phases (timings.json), the trainer's runtime, the metrics' wall time
    and the evaluations' speed: whichever the folder has."""
    out = [Timing(f"demo: {k}", v) for k, v in (load_json(exp, "timings.json", notes) or {}).items()
           if isinstance(v, (int, float))]
    tr = load_json(exp, "train_result.json", notes) or {}
    if isinstance(tr.get("train_runtime"), (int, float)):
        out.append(Timing("training (train_result.json)", tr["train_runtime"],
                          f"{tr.get('global_step', '?')} steps"))
    if wall_time_s is not None:
        out.append(Timing("first to last metrics line", wall_time_s))
    ev = load_json(exp, "eval/eval_social.json", notes) or {}
    speed = ev.get("speed") or {}
    if speed.get("samples_per_s"):
        out.append(Timing("social evaluation", speed["samples"] / speed["samples_per_s"] if speed.get("samples") else None,
                          f"{speed['samples_per_s']:.2f} samples/s"))
    casc = (load_json(exp, "cascades/eval_cascades.json", notes) or {}).get("summary") or {}
    if casc.get("seconds_per_post") is not None:
        out.append(Timing("cascade simulation", casc["seconds_per_post"] * casc.get("cascades", 0),
                          f"{casc['seconds_per_post']:.1f} s per post"))
    return out


class Counts(NamedTuple):
    """One data step's counts, flattened (``counts.posts_in``: 400)."""
    source: str
    values: dict


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v
    return out


def data_counts(exp: Path, cfg: dict | None, notes: list[str]) -> list[Counts]:
    """What went in and came out of the data steps: the folder's data_summary.json, a social
    run's samples and build summaries (through the config's ``samples_dir``), a reviews run's
    training_config.json ``data``."""
    out = []
    ds = load_json(exp, "data_summary.json", notes)
    if isinstance(ds, dict):
        out.append(Counts("data_summary.json", _flat(ds)))
    tc = load_json(exp, "training_config.json", notes)
    if isinstance(tc, dict) and isinstance(tc.get("data"), dict):
        out.append(Counts("training_config.json: data", _flat(tc["data"])))
    samples = (cfg or {}).get("samples_dir")
    if samples:
        s = load_json(Path(samples), "summary.json", notes, f"the samples' counts (from {samples}) are left out")
        if isinstance(s, dict):
            out.append(Counts(f"samples ({samples})", _flat({k: s[k] for k in ("counts", "skipped", "rejected_by_reason")
                                                             if isinstance(s.get(k), dict)})))
            build = s.get("build_dir")
            b = load_json(Path(build), "summary.json", notes, "the build's counts are left out") if build else None
            if isinstance(b, dict):
                out.append(Counts(f"build ({build})", _flat({k: b[k] for k in ("counts", "dropped", "rejected_by_reason")
                                                             if isinstance(b.get(k), dict)})))
    return out


# --------------------------------------------------------------------------- social

class PoolLine(NamedTuple):
    """One candidate of an evaluated pool: the model's score and choice beside the truth."""
    user: str
    line: str
    score: float | None
    chosen: bool
    true: bool
    model_says: str   # the model's action and text for this user ('' when not chosen)
    real_says: str    # the real action and text ('' when the user did not react)

    @property
    def outcome(self) -> str:
        return {(True, True): "hit", (False, True): "miss", (True, False): "false alarm"}.get(
            (self.chosen, self.true), "")


class SocialExample(NamedTuple):
    sample_id: str
    depth: int
    author: str
    post: str
    chain: list[dict]     # the thread above the node asked about (deeper samples)
    pool: list[PoolLine]  # shown: the best scores, and every chosen or true candidate
    hidden: int           # candidates not shown


def social_examples(exp: Path, report: dict, notes: list[str]) -> list[SocialExample]:
    """A few evaluated samples (``EXAMPLES_PER_DEPTH`` per depth, ones with a real reaction
    first) with their pool, the model's scores and choices and the truth."""
    from simtune.recipes.social.evaluate import read_predictions
    shards = sorted((exp / "eval").glob("predictions.shard*-of-*.jsonl"))
    if not shards:
        notes.append("no eval/predictions.shard*.jsonl: no evaluated sample is shown")
        return []
    preds: dict[str, dict] = {}
    for p in shards:
        preds.update(read_predictions(p))
    path = Path(str(report.get("samples_dir"))) / f"{report.get('split', 'val')}.parquet"
    if not path.is_file():
        notes.append(f"the evaluated samples' file {path} is absent: no evaluated sample is shown")
        return []
    import pyarrow.parquet as pq
    try:
        light = pq.read_table(path, columns=["sample_id", "depth", "true_users"]).to_pylist()
        by_depth: dict[int, list[str]] = {}
        for r in sorted(light, key=lambda r: (r["depth"], not r["true_users"])):
            if r["sample_id"] in preds and len(by_depth.setdefault(r["depth"], [])) < EXAMPLES_PER_DEPTH:
                by_depth[r["depth"]].append(r["sample_id"])
        want = [s for ids in by_depth.values() for s in ids]
        rows = pq.read_table(path, filters=[("sample_id", "in", want)]).to_pylist() if want else []
    except (OSError, ValueError, KeyError) as e:
        notes.append(f"{path} could not be read ({e}): no evaluated sample is shown")
        return []
    order = {s: i for i, s in enumerate(want)}
    out = []
    for row in sorted(rows, key=lambda r: order[r["sample_id"]]):
        try:
            out.append(_social_example(row, preds[row["sample_id"]], path))
        except DataError as e:
            notes.append(f"sample {row['sample_id']} left out: {e}")
    return out


def _social_example(row: dict, pred: dict, where: Path) -> SocialExample:
    from simtune.recipes.social.prompt import parse_answer, parse_prompt, split_prompt
    parts = parse_prompt(row["prompt"], str(where))
    cands = [str(c) for c in row["candidates"]]
    lines = split_prompt(row["prompt"], cands, str(where)).lines
    scores = pred.get("scores")
    if not isinstance(scores, list) or len(scores) != len(cands):
        scores = [None] * len(cands)
    answer = {str(e["user"]): e for e in parse_answer(pred.get("completion")) or []}
    real = {str(u): (a, t) for u, a, t in zip(row["true_users"], row["true_actions"], row["true_texts"])}
    pool = [PoolLine(u, ln[len(u) + 2:], s, u in answer, u in real,
                     f"{answer[u]['action']}: {answer[u].get('text', '')}" if u in answer else "",
                     f"{real[u][0]}: {real[u][1]}" if u in real else "")
            for u, ln, s in zip(cands, lines, scores)]
    ranked = sorted(range(len(pool)), key=lambda i: -(pool[i].score if pool[i].score is not None else -1.0))
    keep = set(ranked[:POOL_LINES]) | {i for i, p in enumerate(pool) if p.chosen or p.true}
    shown = [pool[i] for i in ranked if i in keep]
    return SocialExample(str(row["sample_id"]), int(row["depth"]), parts["post_author"], parts["post_text"],
                         parts["chain"], shown, len(pool) - len(shown))


class CascadeView(NamedTuple):
    """One simulated root beside its real cascade (None: that tree is not at hand)."""
    root_id: str
    real: Tree | None
    sim: Tree | None
    real_stats: dict
    sim_stats: dict
    f1: float | None
    truncated: bool


def cascade_views(exp: Path, report: dict, notes: list[str]) -> list[CascadeView]:
    """The first ``EXAMPLES`` simulated roots of ``cascades/``: the simulated tree from the
    shard line (``sim_tree``), the real one from the build's trees.jsonl."""
    from simtune.recipes.social.evaluate import read_predictions
    rows: dict[str, dict] = {}
    for p in sorted((exp / "cascades").glob("cascades.shard*-of-*.jsonl")):
        rows.update(read_predictions(p))
    if not rows:
        notes.append("no cascades/cascades.shard*.jsonl: no cascade is drawn")
        return []
    chosen = list(rows.values())[:EXAMPLES]
    if any("sim_tree" not in r for r in chosen):
        notes.append("cascades/cascades.shard*.jsonl holds no simulated tree (written before trees were kept): "
                     "only the real trees are drawn; the sizes are in the table")
    real = _real_trees(report.get("build_dir"), [str(r["root_id"]) for r in chosen], notes)
    return [CascadeView(str(r["root_id"]), real.get(str(r["root_id"])),
                        flatten(r["sim_tree"]) if isinstance(r.get("sim_tree"), dict) else None,
                        r.get("real") or {}, r.get("sim") or {}, r.get("f1"), bool(r.get("truncated")))
            for r in chosen]


def _real_trees(build: str | None, ids: list[str], notes: list[str]) -> dict[str, Tree]:
    from simtune.recipes.social.simulate import tree_from_record
    from simtune.recipes.social.universe import read_trees
    if not build or not (Path(build) / "trees.jsonl").is_file():
        notes.append(f"the build's trees.jsonl ({build}) is absent: the real cascades are not drawn")
        return {}
    want = set(ids)
    try:  # a line that does not hold one of the ids anywhere is not parsed (a few roots of a large build)
        recs = read_trees(build, lambda r: str(r.get("root_id")) in want, lambda line: any(i in line for i in want))
        return {str(r["root_id"]): flatten(tree_from_record(r)) for r in recs}
    except DataError as e:
        notes.append(f"the real cascades are not drawn: {e}")
        return {}


# --------------------------------------------------------------------------- reviews

class Reply(NamedTuple):
    who: str
    text: str
    rouge_l: float | None   # against the real review, 0..1 (None for the real one)


class ReviewExample(NamedTuple):
    film: str
    timestamp: str
    rating: int | None
    prompt: str | None      # the prompt the model saw: profile, the user's earlier reviews, the request
    replies: list[Reply]    # the real review first, then the model and the two baselines


def review_examples(exp: Path, eval_dir: Path, split: str, notes: list[str]) -> list[ReviewExample]:
    from simtune.recipes.reviews.commands import SYSTEM_RECENT, SYSTEM_SIMILAR
    from simtune.recipes.reviews.evaluate import per_sample
    path = eval_dir / "predictions.jsonl"
    if not path.is_file():
        notes.append(f"no {path.relative_to(exp)}: no review is shown")
        return []
    preds = read_jsonl(path)[:EXAMPLES]
    samples = load_json(exp, f"{split}_samples.json", notes, "the prompts (the users' earlier reviews) are not shown")
    prompts = {(s.get("user_id"), s.get("film"), s.get("timestamp")): s.get("prompt") for s in samples or []
               if isinstance(s, dict)}
    out = []
    for p in preds:
        ref = str(p.get("reference", ""))
        replies = [Reply("real review", ref, None)]
        for who, key in (("model", "generated"), (SYSTEM_RECENT, "baseline_recent"), (SYSTEM_SIMILAR, "baseline_similar")):
            if isinstance(p.get(key), str) and (key != "generated" or p[key]):
                replies.append(Reply(who, p[key], per_sample("rougeL", [p[key]], [ref])[0]))
        out.append(ReviewExample(str(p.get("film", "")), str(p.get("timestamp", "")), p.get("rating"),
                                 prompts.get((p.get("user_id"), p.get("film"), p.get("timestamp"))), replies))
    return out


# --------------------------------------------------------------------------- math

class Found(NamedTuple):
    """Records read from a file the page looks for: where it was (None: nowhere) and its rows."""
    where: str | None
    rows: list[dict]


def math_results(exp: Path) -> Found:
    """Where the math evaluation is (``eval`` or ``.``) and its results: every model of
    eval_math_compare.json, else the one of eval_math.json (no rows: unreadable)."""
    for d in ("eval", "."):
        cmp = exp / d / "eval_math_compare.json"
        one = exp / d / "eval_math.json"
        try:
            if cmp.is_file():
                return Found(d, [r for r in json.loads(cmp.read_text(encoding="utf-8")).get("results", [])
                                 if isinstance(r, dict)])
            if one.is_file():
                return Found(d, [json.loads(one.read_text(encoding="utf-8"))])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            return Found(d, [])
    return Found(None, [])


def math_examples(folder: Path, notes: list[str]) -> list[dict]:
    """A few scored completions of ``eval_math_samples.jsonl``: right ones and wrong ones."""
    path = folder / "eval_math_samples.jsonl"
    if not path.is_file():
        notes.append(f"no {path.name} beside eval_math.json: no evaluated completion is shown")
        return []
    rows = read_jsonl(path)
    right = [r for r in rows if r.get("lenient")][:2]
    return (right + [r for r in rows if not r.get("lenient")])[:EXAMPLES]


def completions(exp: Path) -> Found:
    """The first rows of the latest ``samples/completions_step*.jsonl`` (GRPO: prompt,
    completion, rewards, advantage) and its name."""
    files = sorted((exp / "samples").glob("completions_step*.jsonl"))
    if not files:
        return Found(None, [])
    return Found(files[-1].name, read_jsonl(files[-1])[:EXAMPLES])
