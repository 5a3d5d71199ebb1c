"""`simtune eval social --cascades`: every root of the split simulated from its post alone,
out of everyone (the build's users active before the post: ``simulate.Lines.universe``),
and compared with the real cascade, beside baselines that need no model.

What is compared (conventions stated once here):
- **size**: reactions below the post. ``median ratio`` is the median of simulated / real
  over cascades with a real reaction; ``MSLE`` is the mean of
  ``(log(1 + predicted) - log(1 + real))^2`` as in cascade-popularity prediction.
  Baselines: ``mean size`` (the train split's mean real size, for every post),
  ``author's mean`` (the author's earlier cascades' mean size; the train mean when the
  author has none) and ``log-mean size`` (``exp(mean log(1 + size)) - 1`` over train: the
  constant with the least MSLE there, the strongest of the three when sizes are
  heavy-tailed).
- **depth** and **breadth** per level (means), and the **comment share** of all reactions.
- **who-F1 at depth 0**: the simulated direct reactors against the real ones (nobody real
  and nobody simulated counts 1). The who baselines (``baselines.py``) are asked the same
  question, out of the same universe, each naming its top m.

The real size counts every real reaction, also those deeper than ``--depth_limit``;
a simulation that left named reactions out for ``--max_children`` or ``--max_nodes`` is
flagged ``truncated``. Each root's line in ``cascades.shard*.jsonl`` also keeps the simulated
tree (``sim_tree``: user, action, text, children), which ``simtune report`` draws beside the real one.
"""
from __future__ import annotations

import math
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

from simtune.config import ConfigError
from simtune.io import DataError, atomic_write_json, atomic_write_text
from simtune.metrics.paired import paired_bootstrap, paired_table


class Cascade(NamedTuple):
    root_id: str
    universe: int          # users asked about at depth 0
    real: dict             # simulate.tree_stats of the real tree
    sim: dict              # ... of the simulated one
    f1: float              # who-F1 at depth 0
    truncated: bool
    seconds: float


def split_roots(build_dir: str, cutoffs: dict, split: str, limit: int | None) -> list[dict]:
    """The trees.jsonl records whose root time falls in ``split`` (the samples' cutoffs), oldest first."""
    from simtune.recipes.social.universe import read_trees
    lo = {"train": None, "val": cutoffs["train_before"], "test": cutoffs["val_before"]}[split]
    hi = {"train": cutoffs["train_before"], "val": cutoffs["val_before"], "test": None}[split]
    recs = read_trees(build_dir, lambda r: (lo is None or r["root_time"] >= lo) and (hi is None or r["root_time"] < hi))
    recs.sort(key=lambda r: (r["root_time"], str(r["root_id"])))
    return recs[:limit] if limit else recs


def f1(named, real) -> float:
    named, real = set(named), set(real)
    return 2 * len(named & real) / (len(named) + len(real)) if named or real else 1.0


def size_baselines(build_dir: str, before: int, recs: list[dict]) -> dict[str, dict[str, float]]:
    """{baseline: {root_id: predicted size}}: the mean real size of the roots before ``before``
    (the train split), each author's mean over their roots before the post, and the train
    split's log-mean ``exp(mean log(1 + size)) - 1``: the constant with the lowest MSLE on
    train (on heavy-tailed sizes the mean is far above it)."""
    from simtune.recipes.social.universe import post_of, read_trees
    sizes = [(r["root_time"], post_of(r)["user"], len(r["nodes"]) - 1) for r in read_trees(build_dir, lambda r: True)]
    train = [s for t, _, s in sizes if t < before]
    if not train:
        raise DataError(Path(build_dir) / "trees.jsonl", None, None, "no root before the split: no mean size")
    mean = statistics.fmean(train)
    log_mean = math.expm1(statistics.fmean(map(math.log1p, train)))
    by_author: dict[str, list] = defaultdict(list)
    for t, a, s in sizes:
        by_author[a].append((t, s))
    out: dict[str, dict] = {"mean size": {}, "author's mean": {}, "log-mean size": {}}
    for r in recs:
        a, t = post_of(r)["user"], r["root_time"]
        own = [s for ta, s in by_author[a] if ta < t]
        out["mean size"][str(r["root_id"])] = mean
        out["author's mean"][str(r["root_id"])] = statistics.fmean(own) if own else mean
        out["log-mean size"][str(r["root_id"])] = log_mean
    return out


def size_metrics(pred: list[float], real: list[float]) -> dict:
    ratios = [p / r for p, r in zip(pred, real) if r > 0]
    return {"median_ratio": statistics.median(ratios) if ratios else None,
            "msle": statistics.fmean((math.log1p(p) - math.log1p(r)) ** 2 for p, r in zip(pred, real)),
            "median": statistics.median(pred)}


def shape(stats: list[dict]) -> dict:
    levels = max((len(s["breadth"]) for s in stats), default=0)
    acts: Counter = Counter()
    for s in stats:
        acts.update(s["actions"])
    n = sum(acts.values())
    return {"depth": statistics.fmean(s["depth"] for s in stats),
            "breadth": [statistics.fmean(s["breadth"][d] if d < len(s["breadth"]) else 0 for s in stats)
                        for d in range(levels)],
            "comment_share": acts.get("comment", 0) / n if n else None}


def summarize(cascades: list[Cascade], sizes: dict, who: dict) -> dict:
    real = [c.real["size"] for c in cascades]
    out = {"cascades": len(cascades), "truncated": sum(c.truncated for c in cascades),
           "empty_universe": sum(c.universe == 0 for c in cascades),
           "seconds_per_post": statistics.fmean(c.seconds for c in cascades),
           "real": {**shape([c.real for c in cascades]), "median_size": statistics.median(real)},
           "model": {**size_metrics([c.sim["size"] for c in cascades], real), **shape([c.sim for c in cascades]),
                     "who_f1": statistics.fmean(c.f1 for c in cascades)},
           "size baselines": {k: size_metrics([v[c.root_id] for c in cascades], real) for k, v in sizes.items()},
           "who baselines": {k: statistics.fmean(v[c.root_id] for c in cascades) for k, v in who.items()}}
    base = [k for k in who if k.startswith("baseline: ")]
    if base and cascades:
        best = max(base, key=lambda k: out["who baselines"][k])
        out["who_paired"] = {f"model - {best}": paired_bootstrap([c.f1 for c in cascades],
                                                                 [who[best][c.root_id] for c in cascades])}
    return out


def markdown(s: dict) -> str:
    f = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    names = list(s["size baselines"])
    head = "| | model | " + " | ".join(f"baseline: {n}" for n in names) + " | real |"
    lines = [head, "|" + "---|" * (len(names) + 3)]
    for key, label in (("median_ratio", "size: median simulated/real"), ("msle", "size: MSLE"),
                       ("median", "size: median")):
        real = s["real"]["median_size"] if key == "median" else None
        lines.append(f"| {label} | {f(s['model'][key])} | " + " | ".join(f(s['size baselines'][n][key]) for n in names)
                     + f" | {f(real)} |")
    blank = " | ".join("" for _ in names)
    lines.append(f"| depth (mean) | {f(s['model']['depth'])} | {blank} | {f(s['real']['depth'])} |")
    for d in range(max(len(s["model"]["breadth"]), len(s["real"]["breadth"]))):
        m = s["model"]["breadth"][d] if d < len(s["model"]["breadth"]) else 0.0
        r = s["real"]["breadth"][d] if d < len(s["real"]["breadth"]) else 0.0
        lines.append(f"| breadth at depth {d + 1} (mean) | {f(m)} | {blank} | {f(r)} |")
    lines.append(f"| comment share | {f(s['model']['comment_share'])} | {blank} | {f(s['real']['comment_share'])} |")
    who = ["", "| who-F1 at depth 0, out of the universe | |", "|---|---|", f"| model | {f(s['model']['who_f1'])} |"]
    who += [f"| {n} | {f(v)} |" for n, v in s["who baselines"].items()]
    if s.get("who_paired"):
        who += ["", "who-F1 paired over the same posts (x100, 95% bootstrap interval):", "", paired_table(s["who_paired"])]
    notes = (f"\n\n{s['cascades']} cascades; {s['truncated']} truncated at --max_children / --max_nodes; "
             f"{s['empty_universe']} with nobody active before the post (empty); "
             f"{s['seconds_per_post']:.1f} s per post.")
    return "\n".join(lines + who) + notes + "\n"


def who_baselines(recs: list[dict], lines, stats: dict, build_dir: str, truth: dict | None,
                  seed: int) -> dict[str, float]:
    """Each who baseline's depth-0 who-F1 per root (``{name: {root_id: F1}}``), asked each
    root's depth-0 question out of its universe, as the simulation asked it."""
    from simtune.recipes.social.baselines import BuildActivity, baseline_predictions
    from simtune.recipes.social.universe import ask, questions
    rows, real = [], {}
    for r in recs:
        q = questions(r, 0)[0]
        prompt, cands = ask(q, lines, lines.universe(q.post["time"]))
        rows.append({"sample_id": str(r["root_id"]), "depth": 0, "time": r["root_time"], "prompt": prompt,
                     "candidates": cands})
        real[str(r["root_id"])] = q.truth
    guesses = baseline_predictions(rows, stats, BuildActivity(build_dir), seed, truth)
    return {(f"baseline: {k}" if k != "oracle" else "oracle (the rule that made the data)"):
            {sid: f1([e["user"] for e in g[sid].answer], real[sid]) for sid in real} for k, g in guesses.items()}


def evaluate_cascades(cfg, model, tok) -> dict:
    """``cfg``: a SocialEvalConfig with ``cascades`` on. Each shard (``--shard`` or torchrun's
    RANK/WORLD_SIZE, as ``eval social``) simulates every n-th root into
    ``cascades.shard{i}-of-{n}.jsonl`` (a killed run resumes there); shard 0 merges and writes
    eval_cascades.json and eval_cascades.md into ``cfg.out``. Returns the report on shard 0."""
    from simtune.recipes.social.baselines import train_statistics
    from simtune.recipes.social.model.decision import WhoDecision
    from simtune.recipes.social.evaluate import (_summary_field, find_truth, load_split, load_truth, merge_shards,
                                                 parse_shard, predict_shard)
    from simtune.recipes.social.simulate import (Lines, SimulateConfig, scorer_answerer, simulate, tree_from_record,
                                                 tree_stats)
    from simtune.recipes.social.universe import post_of, questions

    samples = Path(cfg.samples_dir)
    build = cfg.build_dir or _summary_field(samples, "build_dir")
    cutoffs = _summary_field(samples, "split_cutoffs")
    if not build or not cutoffs:
        raise ConfigError(f"{samples}/summary.json: no build folder or split cutoffs; --cascades needs both")
    recs = split_roots(build, cutoffs, cfg.split, cfg.limit)
    if not recs:
        raise DataError(Path(build) / "trees.jsonl", None, None, f"no root in the {cfg.split} split")
    folder = cfg.model if cfg.model and Path(cfg.model).is_dir() else None
    if folder is None:
        raise ConfigError(f"{cfg.source_of('cascades')}: --cascades needs a model folder trained by "
                          "`simtune train social who` (with its who.json)")
    dec = WhoDecision.load(folder, model, tok)
    stats = train_statistics(load_split(cfg.samples_dir, "train", ["depth", "candidates", "true_users",
                                                                   "true_actions", "true_texts"]))
    sim_cfg = SimulateConfig(model=folder, post="(eval social --cascades)", build_dir=build,
                             depth_limit=cfg.depth_limit, max_nodes=cfg.max_nodes, max_children=cfg.max_children,
                             reaction_tokens=cfg.reaction_tokens, seed=cfg.seed, who_draw=cfg.who_draw)
    answer = scorer_answerer(model, tok, dec, sim_cfg, universe=True, fixed=None if cfg.reactions else stats)
    k = dec.candidates if cfg.candidates is None else cfg.candidates
    lines = Lines(None, build)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    i, n = parse_shard(cfg.shard)

    def one(batch):  # predict_shard's answerer: one root per batch
        rec = batch[0]["rec"]
        post, t = post_of(rec), time.perf_counter()
        users = lines.universe(post["time"])
        tree = simulate(answer, post, users, lines, sim_cfg, candidates=k) if users else {"children": []}
        c = Cascade(str(rec["root_id"]), len([u for u in users if u != post["user"]]), tree_stats(tree_from_record(rec)),
                    tree_stats(tree), f1([x["user"] for x in tree["children"]], questions(rec, 0)[0].truth),
                    bool(tree.get("truncated")), time.perf_counter() - t)
        print(f"  cascade {c.root_id}: simulated {c.sim['size']} (real {c.real['size']}), universe {c.universe}, "
              f"who-F1 {c.f1:.2f}, {c.seconds:.1f} s" + (" truncated" if c.truncated else ""), flush=True)
        return [{**c._asdict(), "sim_tree": tree}]  # the tree itself for `simtune report`'s page

    rows = [{"sample_id": str(r["root_id"]), "rec": r} for r in recs]
    predict_shard(one, rows, out, i, n, batch_size=1, progress=False, stem="cascades")
    if i != 0:
        print(f"shard {i}/{n} done; shard 0 merges")
        return None
    done = merge_shards(out, rows, n, wait_s=3600 if n > 1 else 0, stem="cascades")
    cascades = [Cascade(**{k: done[r["sample_id"]][k] for k in Cascade._fields}) for r in rows]
    truth = load_truth(cfg.truth or find_truth(build))
    summary = summarize(cascades, size_baselines(build, cutoffs["train_before"], recs),
                        who_baselines(recs, lines, stats, build, truth, cfg.seed))
    report = {"split": cfg.split, "model": cfg.model, "build_dir": build, "depth_limit": cfg.depth_limit,
              "max_nodes": cfg.max_nodes, "reactions": cfg.reactions, "who_draw": cfg.who_draw, "candidates": k,
              "summary": summary,
              "universe_calibration": dec.calibration.get("universe"),
              "notes": "conventions: the docstring of simtune/recipes/social/cascades.py"}
    atomic_write_json(out / "eval_cascades.json", report)
    atomic_write_text(out / "eval_cascades.md", f"# Cascades simulated out of everyone: {cfg.split} split\n\n"
                      + markdown(summary))
    return report
