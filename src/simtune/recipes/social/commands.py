"""`simtune data social {build,samples,grpo,synth}`: configs and drivers.

Every command writes its outputs into one folder atomically (a temporary sibling renamed
into place at the end, so an interrupted run leaves nothing that looks complete), marked as
its own (``simtune.io.OutputMarker``: only a folder the same command wrote is replaced), with a
``summary.json`` (counts in/out, rejected and dropped by reason, timing) and, where
records can be bad, a ``rejects.jsonl`` (file, line, field, reason).
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

from simtune.config import BaseConfig, ConfigError, opt, shown
from simtune.config_paths import DATES_HELP, check_output_folder, date_range
from simtune.io import DataError
from simtune.recipes.social.data.records import DIFFUSION_FIRST_DATE, FIRST_DATE, LAST_DATE
from simtune.pseudonym import PSEUDONYMIZE_HELP, SALT_FILE_HELP, SCRUB_MENTIONS_HELP

log = logging.getLogger(__name__)

@dataclass
class SocialBuildConfig(BaseConfig):
    """Raw corpora -> trees.jsonl, users.parquet, activity.npz."""

    inputs: list[str] = opt([], "Weibo API JSON-lines files (one post per line); several allowed")
    profiles: Optional[str] = opt(None, "user profile JSON: {user_id: {interests, description, ...}}")
    id_map: Optional[str] = opt(None, "optional JSON {raw user id: canonical id}")
    ced_dir: Optional[str] = opt(None, "a weibo-ced folder (original-microblog + *-repost lists)")
    ced_limit: Optional[int] = opt(None, "read only the first N CED cascades by file name", min=1)
    diffusion: list[str] = opt([], "who-joins cascade files, `uid time,uid time,...` a line (Twitter, Douban: "
                                   "FOREST / MS-HGAT form): the first user posts, the others repost it")
    out: str = opt("outputs/social/build", "output folder (replaced atomically)")
    window_days: float = opt(7.0, "keep interactions up to this many days after the root", min=0.0, max=36500)
    tz_offset_hours: float = opt(8.0, "UTC offset assumed for dates without one (Beijing time)", min=-12, max=14)
    first_date: str = opt("auto", DATES_HELP + f"; first_date 'auto': {FIRST_DATE} (Sina Weibo opened), or "
                                               f"{DIFFUSION_FIRST_DATE} (Douban opened) when diffusion files are read")
    last_date: str = opt(LAST_DATE, DATES_HELP)
    embedded_profiles: bool = opt(True, "use embedded `user` objects as profiles for users without one")
    pseudonymize: Union[bool, Literal["auto"]] = opt("auto", PSEUDONYMIZE_HELP)
    scrub_mentions: Union[bool, Literal["auto"]] = opt("auto", SCRUB_MENTIONS_HELP + " (known: a name in the "
                                                       "profiles, or of a user object in the same post)")
    salt_file: Optional[str] = opt(None, SALT_FILE_HELP)
    strict: bool = opt(False, "stop at the first bad record (DataError naming file:line and field)")
    workers: int = opt(1, "processes parsing the JSON-lines inputs (0 = one per CPU); the output is the same for any count",
                       min=0)
    progress: bool = opt(True, "show progress bars")

    def validate(self) -> None:
        super().validate()
        self.dates()
        check_output_folder(self, "out", "data social build", {"inputs": self.inputs, "profiles": self.profiles,
                                                               "id_map": self.id_map, "ced_dir": self.ced_dir,
                                                               "diffusion": self.diffusion})


    def dates(self):
        """The accepted dates, with first_date 'auto' resolved per corpus."""
        if self.first_date != "auto":
            return date_range(self)
        from simtune.io import DateRange
        try:
            return DateRange.parse(DIFFUSION_FIRST_DATE if self.diffusion else FIRST_DATE, self.last_date)
        except ValueError as e:
            raise ConfigError(f"{self.source_of('last_date')}: 'last_date': {e}") from None


MAX_K = 1000  # noise users per true user, at most


@dataclass
class SocialSamplesConfig(BaseConfig):
    """Trees -> SFT samples, one Parquet file per split."""

    build_dir: str = opt("outputs/social/build", "output folder of `data social build`")
    out: str = opt("outputs/social/samples", "output folder (replaced atomically)")
    max_depth: int = opt(1, "make samples for nodes of depth 0..max_depth (0 = the root)", min=0)
    k_ranges: list[list[float]] = opt([[0.0, 3.0], [5.0, 11.0]],
                                      "noise users = k x true users, k ~ U(lo, hi); one [lo, hi] per depth, the last repeats")
    max_pool: int = opt(1000, "skip (and count) samples whose candidate pool would exceed this", min=1)
    train_share: float = opt(0.85, "share of roots (by root time, oldest first) in train", min=0.0, max=1.0)
    val_share: float = opt(0.15, "share of roots in val (after train)", min=0.0, max=1.0)
    test_share: float = opt(0.0, "share of roots in test (the newest)", min=0.0, max=1.0)
    seed: int = opt(0, "seed for k, noise users and candidate order")
    history_in_prompt: Optional[bool] = opt(None, "show each candidate's activity before the sample's time (count, an "
                                                  "early text). Noise users always have some, so where most actions are "
                                                  "a user's first (CED) it gives the true ones away. Default (auto): on "
                                                  "unless more than half of all activity is a user's first")
    answer_order: str = opt("pool", "order of the reactors in the target answer: 'pool' (candidate order: the "
                                    "model scans the pool once) or 'time' (the order they reacted)",
                            choices=["pool", "time"])
    leaf_share: float = opt(0.0, "share of the nodes without children (depth <= max_depth) that also make a sample, "
                                 "whose answer is [] (nobody reacts), so that a model learns when a cascade stops; "
                                 "their pools hold noise users as for one reactor (k from the depth's range)",
                            min=0.0, max=1.0)
    noise_users: str = opt("active_before", "where noise users come from: 'active_before' (users active before the "
                                            "node: a candidate with no earlier act is then always a true one) or "
                                            "'all' (every user of the build, as in a universe of accounts)",
                           choices=["active_before", "all"])
    rows_per_group: int = opt(5000, "Parquet row-group size", min=1)
    workers: int = opt(1, "processes making samples (0 = one per CPU); the output is the same for any count", min=0)
    strict: bool = opt(False, "stop at the first bad tree line")
    progress: bool = opt(True, "show progress bars")

    def validate(self) -> None:
        super().validate()
        check_output_folder(self, "out", "data social samples", {"build_dir": self.build_dir})
        for r in self.k_ranges:  # k > max_pool: no pool fits, every sample of the depth would be skipped
            if len(r) != 2 or r[0] < 0 or r[1] < r[0] or r[1] > MAX_K or r[0] > self.max_pool:
                raise ConfigError(f"{self.source_of('k_ranges')}: 'k_ranges' items must be [lo, hi] with "
                                  f"0 <= lo <= hi <= {MAX_K} and lo <= max_pool ({self.max_pool}), got {shown(r)}")
        if not self.k_ranges:
            raise ConfigError(f"{self.source_of('k_ranges')}: 'k_ranges' must not be empty")
        total = self.train_share + self.val_share + self.test_share
        if abs(total - 1.0) > 1e-6:
            keys = [k for k in ("train_share", "val_share", "test_share") if self.source_of(k) != self._file]
            raise ConfigError(f"{self.source_of((keys or ['train_share'])[0])}: train_share + val_share + test_share "
                              f"must be 1, got {self.train_share:g} + {self.val_share:g} + {self.test_share:g} = "
                              f"{total:g}")


@dataclass
class SocialGRPOConfig(BaseConfig):
    """SFT samples -> GRPO prompts with ground truth."""

    samples_dir: str = opt("outputs/social/samples", "output folder of `data social samples`")
    out: str = opt("outputs/social/grpo", "output folder (replaced atomically)")
    depths: Optional[list[int]] = opt(None, "keep only these sample depths (default: all)")
    progress: bool = opt(True, "show progress bars")

    def validate(self) -> None:
        super().validate()
        check_output_folder(self, "out", "data social grpo", {"samples_dir": self.samples_dir})


@dataclass
class SocialSynthConfig(BaseConfig):
    """Write the seeded synthetic corpus (posts.jsonl, profiles.json, truth.json)."""

    out: str = opt("outputs/social/synthetic", "output folder")
    seed: int = opt(0, "random seed (same seed and sizes -> byte-identical files)")
    users: int = opt(300, "number of users", min=2)
    posts: int = opt(400, "number of posts", min=1)
    span_days: float = opt(60.0, "posts spread over this many days", min=0.001)
    match_prob: float = opt(0.9, "share of reactors drawn from users interested in the post's topic", min=0.0, max=1.0)
    reply_prob: float = opt(0.35, "chance that a direct reaction gets replies", min=0.0, max=1.0)
    late_prob: float = opt(0.03, "chance that a reaction comes after the one-week window", min=0.0, max=1.0)

    def validate(self) -> None:
        super().validate()
        check_output_folder(self, "out", "data social synth")


def _parse(cls, argv: list[str]):
    return cls.from_argv(argv)


def _print_summary(title: str, s: dict, out: str) -> None:
    print(f"{title}: {out}  ({s.get('seconds', 0):.1f} s)")
    if "pseudonymized" in s:
        print("  user ids: " + (f"pseudonymised (salt fingerprint {s['salt_fingerprint']})" if s["pseudonymized"]
                                else "as read (not pseudonymised)"))
    if "mentions" in s:
        m = s["mentions"]
        print("  @mentions: " + (f"rewritten ({m['to_user']} to a user's id, {m['to_placeholder']} to "
                                 f"@[someone])" if m["scrubbed"] else "as written"))
    for k, v in s.get("counts", {}).items():
        print(f"  {k:<34} {v}")
    for group in ("dropped", "skipped", "rejected_by_reason"):
        if s.get(group):
            print(f"  {group}: " + ", ".join(f"{k}={v}" for k, v in s[group].items()))


# --------------------------------------------------------------------------- build

def run_build(cfg: SocialBuildConfig) -> dict:
    from simtune import pseudonym
    from simtune.recipes.social.data.build import build_trees

    synthetic = not cfg.ced_dir and not cfg.diffusion and all(pseudonym.is_synthetic_social_input(p) for p in [*cfg.inputs, cfg.profiles] if p)
    pz = pseudonym.from_config(cfg, synthetic, [cfg.out])
    return build_trees(inputs=cfg.inputs, profiles=cfg.profiles, id_map=cfg.id_map, ced_dir=cfg.ced_dir,
                       ced_limit=cfg.ced_limit, out_dir=cfg.out, window_seconds=int(cfg.window_days * 86400),
                       strict=cfg.strict, tz_offset=int(cfg.tz_offset_hours * 3600),
                       embedded_profiles=cfg.embedded_profiles, progress=cfg.progress,
                       workers=cfg.workers or (os.cpu_count() or 1), pseudonymizer=pz, dates=cfg.dates(),
                       scrub_mentions=pseudonym.scrub_from_config(cfg, synthetic), diffusion=cfg.diffusion)


# --------------------------------------------------------------------------- samples

def run_samples(cfg: SocialSamplesConfig) -> dict:
    from tqdm import tqdm

    from simtune.io import RejectLog, atomic_path, atomic_write_json
    from simtune.parallel import few_gc_passes, imap_ordered
    from simtune.recipes.social.data.weibo import line_chunks
    from simtune.recipes.social.sample_files import SplitWriters
    from simtune.recipes.social.samples import SampleMaker, sample_lines, split_cutoffs
    from simtune.recipes.social.user_table import UserTable

    t_start = time.time()
    bdir = Path(cfg.build_dir)
    for f in ("trees.jsonl", "users.parquet", "activity.npz"):
        if not (bdir / f).is_file():
            raise DataError(bdir / f, None, None, "missing: run `simtune data social build` first")
    users = UserTable(bdir)
    workers = cfg.workers or (os.cpu_count() or 1)
    cut = split_cutoffs(users.root_times, cfg.train_share, cfg.val_share, cfg.test_share)
    splits = ["train", "val"] + (["test"] if cfg.test_share > 0 else [])
    first_share = users.first_act_share()
    history = cfg.history_in_prompt if cfg.history_in_prompt is not None else first_share <= 0.5
    if cfg.history_in_prompt is None and not history:
        log.warning("history_in_prompt: off (auto): %.0f%% of all activity is a user's first, so a candidate's history "
                    "would give the true reactors away; --history_in_prompt true to force it", 100 * first_share)
    maker = SampleMaker(users, max_depth=cfg.max_depth, k_ranges=cfg.k_ranges, max_pool=cfg.max_pool,
                        seed=cfg.seed, cutoffs=cut, history=history,
                        order=cfg.answer_order, leaf_share=cfg.leaf_share, noise_users=cfg.noise_users)
    maker.ids_arrow()  # before any worker forks
    c: Counter = Counter()
    by_depth: Counter = Counter()
    prompt_chars = []
    trees_path = bdir / "trees.jsonl"
    with atomic_path(cfg.out, is_dir=True, command="data social samples") as tmp:
        with RejectLog(tmp / "rejects.jsonl", strict=cfg.strict) as rejects:
            writers = SplitWriters(tmp, splits, cfg.rows_per_group)
            bar = tqdm(desc="samples", unit="tree", unit_scale=True, disable=not cfg.progress, mininterval=0.5)
            stats: Counter = Counter()
            try:
                with few_gc_passes():
                    for batches, bad, st in imap_ordered(sample_lines, maker, line_chunks(str(trees_path)), workers):
                        n_trees = st.pop("n_trees")
                        plens = st.pop("prompt_chars")
                        by_depth.update(st.pop("by_depth"))
                        stats.update(st)
                        for no, reason in bad:
                            c["trees_rejected"] += 1
                            rejects.reject(trees_path, no, reason)
                        for split, batch in batches.items():
                            writers.add_batch(split, batch)
                        if len(prompt_chars) < 100_000:
                            prompt_chars += plens[:100_000 - len(prompt_chars)]
                        bar.update(n_trees)
                        c["trees_in"] += n_trees
            finally:
                writers.close()
            bar.close()
            rej = dict(rejects.counts)
        if not (tmp / "rejects.jsonl").exists():
            (tmp / "rejects.jsonl").write_bytes(b"")
        import numpy as np

        pc = np.array(prompt_chars) if prompt_chars else np.zeros(1)
        summary = {
            "command": "data social samples", "build_dir": str(bdir), "config": cfg.to_dict(),
            "split_cutoffs": {"train_before": cut[0], "val_before": cut[1]},
            "counts": {"trees_in": c["trees_in"], "trees_rejected": c["trees_rejected"],
                       "samples_out": sum(writers.n.values()),
                       **{f"samples_{s}": n for s, n in writers.n.items()}},
            "samples_by_depth": {str(k): v for k, v in sorted(by_depth.items())},
            "skipped": {"pool_too_large": stats["pool_too_large"]},
            "noise_short": stats["noise_short"],
            "leaf_samples": {"share": cfg.leaf_share, "made": stats["leaf_samples"],
                             "skipped_empty_pool": stats["leaf_empty_pool"]},
            "no_history": {
                "true_share": round(stats["true"] / max(stats["true_total"], 1), 4),
                "noise_share": round(stats["noise"] / max(stats["noise_total"], 1), 4)},
            "history_in_prompt": {"used": history, "auto": cfg.history_in_prompt is None,
                                  "first_act_share": round(first_share, 4)},
            "prompt_chars": {"mean": round(float(pc.mean()), 1), "p95": int(np.percentile(pc, 95)), "max": int(pc.max())},
            "rejected_by_reason": rej,
            "outputs": [f"{s}.parquet" for s in splits] + ["rejects.jsonl", "summary.json"],
            "seconds": round(time.time() - t_start, 3),
        }
        atomic_write_json(tmp / "summary.json", summary)
    return summary


# --------------------------------------------------------------------------- grpo

def run_grpo(cfg: SocialGRPOConfig) -> dict:
    from simtune.io import atomic_path, atomic_write_json
    from simtune.recipes.social.grpo_data import write_grpo

    t_start = time.time()
    c: Counter = Counter()
    with atomic_path(cfg.out, is_dir=True, command="data social grpo") as tmp:
        per_split = write_grpo(Path(cfg.samples_dir), tmp, cfg.depths, c, cfg.progress)
        summary = {"command": "data social grpo", "samples_dir": cfg.samples_dir, "depths": cfg.depths,
                   "counts": {"samples_in": c["samples_in"], "rows_out": c["rows_out"],
                              **{f"rows_{k}": v for k, v in per_split.items()}},
                   "dropped": {"other_depth": c["dropped_depth"]},
                   "outputs": [f"{k}.parquet" for k in per_split] + ["summary.json"],
                   "seconds": round(time.time() - t_start, 3)}
        atomic_write_json(tmp / "summary.json", summary)
    return summary


# --------------------------------------------------------------------------- synth

def run_synth(cfg: SocialSynthConfig) -> dict:
    from simtune.io import atomic_path, atomic_write_json
    from simtune.pseudonym import file_sha256
    from simtune.recipes.social.synthetic import generate

    t0 = time.time()
    with atomic_path(cfg.out, is_dir=True, command="data social synth") as tmp:  # all files or none
        info = generate(tmp, seed=cfg.seed, n_users=cfg.users, n_posts=cfg.posts, span_days=cfg.span_days,
                        match_prob=cfg.match_prob, reply_prob=cfg.reply_prob, late_prob=cfg.late_prob)
        summary = {"command": "data social synth", "config": cfg.to_dict(),
                   "counts": {"users": info["users"], "posts": info["posts"], "interactions": info["interactions"]},
                   "outputs": info["files"] + ["summary.json"],
                   # what proves a file synthetic to `pseudonymize: auto` (pseudonym.is_synthetic_social_input)
                   "sha256": {f: file_sha256(tmp / f) for f in info["files"]},
                   "seconds": round(time.time() - t0, 3)}
        atomic_write_json(tmp / "summary.json", summary)
    return summary


def _command(cls, run, title: str):
    """`simtune <title> [--config FILE] [--key value ...]`: parse, run, print the summary."""
    def cli(argv: list[str]) -> int:
        cfg = _parse(cls, argv)
        if cfg is None:
            return 0
        _print_summary(title, run(cfg), cfg.out)
        return 0
    return cli


cli_build = _command(SocialBuildConfig, run_build, "data social build")
cli_samples = _command(SocialSamplesConfig, run_samples, "data social samples")
cli_grpo = _command(SocialGRPOConfig, run_grpo, "data social grpo")
cli_synth = _command(SocialSynthConfig, run_synth, "data social synth")
