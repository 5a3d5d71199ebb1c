"""The review recipe's commands: ``data reviews inspect|build``, ``train reviews``,
``eval reviews`` and ``ablate reviews``.

Reports printed here never show user keys or names from Douban: users are numbered in
the order they appear. The user keys are written only into files under the experiment
folder (``outputs/``).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from simtune.config import BaseConfig, ConfigError, opt, split_config_arg
from simtune.stage_configs import SFTConfig
from simtune.config_paths import date_range, inside
from simtune.io import is_within
from simtune.io import RejectLog, atomic_path, atomic_write_json, atomic_write_text, check_apart
from simtune.pseudonym import mention_summary
from simtune.recipes.reviews.baselines import compute_baselines
from simtune.recipes.reviews.evaluate import evaluate_rows, markdown_table, paired_bootstrap, paired_table, per_sample
from simtune.recipes.reviews.ingest import ReviewCorpus, is_example, load_reviews, pseudonymize_corpus, scrub_mentions
from simtune.recipes.reviews.samples import (SPLITS, ReviewsConfig, Split, build_samples, split_corpus, time_ranges,
                                             variant_name)

SYSTEM_RECENT = "baseline: most recent earlier review"
SYSTEM_SIMILAR = "baseline: earlier review most like the film's other reviews"


# --------------------------------------------------------------------------- config helpers

def load_config(argv: list[str], **kw) -> ReviewsConfig:
    path, rest = split_config_arg(argv)
    return ReviewsConfig.load(path, rest, **kw)


def _help(argv: list[str], usage: str, cls: type[BaseConfig] = ReviewsConfig) -> bool:
    return cls.print_help_if_asked(argv, usage)


# --------------------------------------------------------------------------- data

@dataclass
class Prepared:
    corpus: ReviewCorpus
    split: Split
    samples: list[dict]          # every split, users in input order, each user's in time order
    test_rows: list[dict]        # the test samples with their two baselines
    val_rows: list[dict]         # ... and the val samples (decoding is tuned on them)
    baseline_info: dict = dataclasses.field(default_factory=dict)
    salt_fingerprint: str | None = None  # set when user ids are pseudonymised

    def rows(self, split: str) -> list[dict]:
        return [s for s in self.samples if s["split"] == split]

    def summary(self) -> dict:
        c = self.corpus
        return {"source": c.source, "form": c.form, "records_in": c.records_in, "reviews_read": len(c.reviews),
                "rejected": c.rejects.total, "rejected_by_reason": dict(c.rejects.counts),
                "ignored_collections": c.ignored_collections, **c.notes, "users": len(c.by_user()),
                "users_kept": len(self.split.per_user), "users_skipped": self.split.skipped_users,
                "reviews_of_skipped_users": self.split.skipped_reviews, "min_reviews": self.split.min_reviews,
                "samples": len(self.samples), "split_sizes": self.split.counts(),
                "time_ranges": time_ranges(self.split), "pseudonymized": self.salt_fingerprint is not None,
                "mentions": mention_summary(c.mentions is not None, c.mentions or {}),
                **({"salt_fingerprint": self.salt_fingerprint} if self.salt_fingerprint else {})}


def prepare(cfg: ReviewsConfig, tokenizer=None, rejects_path: str | Path | None = None) -> Prepared:
    from simtune import pseudonym
    pz = pseudonym.from_config(cfg, is_example(cfg.data_path), [cfg.output_root, cfg.output_dir])
    rejects = RejectLog(rejects_path, strict=cfg.on_bad_record == "error")
    with rejects:
        corpus = load_reviews(cfg.data_path, rejects, date_range(cfg))
    if pseudonym.scrub_from_config(cfg, is_example(cfg.data_path)):  # before the ids change: names lead to raw keys
        corpus = scrub_mentions(corpus, pz)
    if pz is not None:
        corpus = pseudonymize_corpus(corpus, pz)
    split = split_corpus(corpus, cfg.ratios, cfg.min_reviews)
    if not split.per_user:
        raise ConfigError(f"{cfg.source_of('min_reviews')}: no user in {cfg.data_path} has {cfg.min_reviews} or more "
                          f"reviews ({split.skipped_users} users skipped)")
    samples = build_samples(corpus, split, cfg.prompt_options(), tokenizer)
    rows, info = {}, {}
    for name in ("test", "val"):
        chosen = [s for s in samples if s["split"] == name]
        baselines, info[name] = compute_baselines(split, (name,))
        assert len(baselines) == len(chosen)
        rows[name] = [{**s, **b} for s, b in zip(chosen, baselines)]
    return Prepared(corpus, split, samples, rows["test"], rows["val"], info["test"], pz.fingerprint if pz else None)


def print_inspect(prep: Prepared, n_samples: int, out=None) -> None:
    out = out or sys.stdout
    s = prep.summary()
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"source: {s['source']} ({s['form']} form)")
    notes = [f"{k.replace('_', ' ')}: {s[k]}" for k in ("unknown_films", "empty_files") if s.get(k)]
    p(f"records: {s['records_in']}; reviews read: {s['reviews_read']}; rejected: {s['rejected']}"
      + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(s['rejected_by_reason'].items()))})" if s["rejected"] else "")
      + (f"; {', '.join(notes)} (no review dropped)" if notes else ""))
    p(f"users: {s['users']}; kept (>= {s['min_reviews']} reviews): {s['users_kept']}; "
      f"skipped: {s['users_skipped']} users ({s['reviews_of_skipped_users']} reviews)")
    sizes = s["split_sizes"]
    p(f"samples: {s['samples']}  (train {sizes['train']} / val {sizes['val']} / test {sizes['test']})")
    p("user ids: " + (f"pseudonymised (salt fingerprint {s['salt_fingerprint']})" if s["pseudonymized"]
                      else "as read (not pseudonymised)"))
    for name in SPLITS:
        tr = s["time_ranges"][name]
        p(f"  {name:<5} time range: {tr[0]} .. {tr[1]}" if tr else f"  {name:<5} time range: (empty)")
    rated = sum(1 for x in prep.samples if x["rating"] is not None)
    p(f"samples with a star rating: {rated} of {len(prep.samples)}")
    number = {uid: i + 1 for i, uid in enumerate(prep.split.per_user)}
    shown = prep.rows("train")[:max(0, n_samples)]
    if shown:
        p(f"\nfirst {len(shown)} training samples (users numbered, not named; history counted in characters):")
    for x in shown:
        p(f"\n--- user #{number[x['user_id']]}, {x['split']}, 《{x['film']}》, {x['timestamp']}, "
          f"rating {x['rating'] if x['rating'] is not None else '-'}, {len(x['history_timestamps'])} of "
          f"{x['n_earlier']} earlier reviews shown ---")
        p(x["prompt"])
        p(f">>> {x['response']}")


def cmd_inspect(argv: list[str]) -> int:
    usage = "usage: simtune data reviews inspect FILE_OR_FOLDER [--config FILE] [--key value ...]"
    if _help(argv, usage):
        return 0
    if not argv or argv[0].startswith("--"):
        print(usage, file=sys.stderr)
        return 2
    cfg = load_config(argv[1:], data_path=argv[0])
    prep = prepare(cfg)
    print_inspect(prep, cfg.preview_samples)
    return 0


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def render_training_text(tokenizer, sample: dict) -> str:
    if tokenizer is None:
        return f"[user]\n{sample['prompt']}\n[assistant]\n{sample['response']}"
    return tokenizer.apply_chat_template([{"role": "user", "content": sample["prompt"]},
                                         {"role": "assistant", "content": sample["response"]}], tokenize=False)


def write_run_files(root: Path, cfg: ReviewsConfig, prep: Prepared, tokenizer=None) -> dict[str, Path]:
    """data/{train,val,test}.jsonl, test_samples.json, training_config.json and
    training_samples_preview.txt in ``root``."""
    root = Path(root)
    paths = {s: root / "data" / f"{s}.jsonl" for s in SPLITS}
    for s in SPLITS:
        _write_jsonl(paths[s], prep.rows(s))
    paths["test_samples"] = root / "test_samples.json"
    atomic_write_json(paths["test_samples"], prep.test_rows)
    paths["val_samples"] = root / "val_samples.json"  # decoding is tuned on these, never on test
    atomic_write_json(paths["val_samples"], prep.val_rows)
    paths["training_config"] = root / "training_config.json"
    atomic_write_json(paths["training_config"], {
        "variant": cfg.variant(), "use_profile": not cfg.no_profile, "use_history": not cfg.no_history,
        "with_rating": cfg.with_rating, "history_budget": cfg.history_budget,
        "history_budget_unit": "tokens" if tokenizer is not None else "characters",
        "data": prep.summary(), "baselines": prep.baseline_info, "config": cfg.to_dict()})
    lines = [f"# {cfg.preview_samples} training samples as the model sees them (variant {cfg.variant()})"]
    for i, s in enumerate(prep.rows("train")[:cfg.preview_samples]):
        lines += ["", f"===== sample {i + 1}: 《{s['film']}》 {s['timestamp']} =====", render_training_text(tokenizer, s)]
    paths["preview"] = root / "training_samples_preview.txt"
    atomic_write_text(paths["preview"], "\n".join(lines) + "\n")
    return paths


def cmd_build(argv: list[str]) -> int:
    usage = "usage: simtune data reviews build --config FILE [--output_dir DIR] [--key value ...]"
    if _help(argv, usage):
        return 0
    cfg = load_config(argv)
    tok = _tokenizer(cfg)
    root = _run_folder(cfg)
    prep = prepare(cfg, tok, root / "rejects.jsonl")
    paths = write_run_files(root, cfg, prep, tok)
    print_inspect(prep, 0)
    print(f"\nwrote {paths['train']}, {paths['val']}, {paths['test']} and {paths['test_samples']}")
    return 0


# --------------------------------------------------------------------------- training

def _tokenizer(cfg: ReviewsConfig):
    from simtune.models import load_tokenizer
    return load_tokenizer(cfg.model_name_or_path, gguf_file=cfg.gguf_file, chat_template=cfg.chat_template,
                          trust_remote_code=cfg.trust_remote_code)


def _run_folder(cfg: ReviewsConfig, name: str | None = None) -> Path:
    """The run folder the data and the model go to; refused when it is, holds or lies inside the
    input data (``check_apart``)."""
    from simtune.experiment import Experiment
    data = None if str(cfg.data_path) == "example" else cfg.data_path
    if cfg.output_dir:
        check_apart({"output_dir": cfg.output_dir}, {"data_path": data})
        root = Path(cfg.output_dir)
        root.mkdir(parents=True, exist_ok=True)
        return root
    if data and Path(data).is_dir() and is_within(cfg.output_root, data):  # new run folders would go into it
        raise ConfigError(f"{cfg.source_of('output_root')}: 'output_root' {cfg.output_root} is inside the input "
                          f"folder {data} ('data_path'): an output may not lie inside an input")
    name = name or f"{cfg.run_name}_{cfg.variant()}"
    if cfg.resume:  # the newest run of the same name and variant; the stage resumes its checkpoints
        exp = Experiment.latest(cfg.recipe, name, cfg.output_root)
        if exp is None:
            raise ConfigError(f"resume: no earlier run '{name}' under {Path(cfg.output_root) / cfg.recipe}")
        check_apart({"run folder": exp.root}, {"data_path": data})
        return exp.root
    return Experiment.create(cfg.recipe, name, cfg.output_root).root


def sft_config(cfg: ReviewsConfig, train_file: Path, eval_file: Path | None, output_dir: Path) -> SFTConfig:
    """The plain SFT stage config: every SFTConfig field of ``cfg``, with the built data."""
    values = {k: getattr(cfg, k) for k in SFTConfig.field_names()}
    values.update(train_file=str(train_file), eval_file=str(eval_file) if eval_file else None,
                  output_dir=str(output_dir), data_format="prompt_response")
    if eval_file is None:  # no val split: nothing to stop early on
        values.update(eval_strategy="no", early_stopping_patience=None, eval_split=0.0)
    return SFTConfig.from_dict(values, source=cfg.source_of("train_file"))


def train(cfg: ReviewsConfig, callbacks=None) -> dict:
    """Build the data into a new experiment folder and run the SFT stage there."""
    from simtune.stages import run_stage
    tok = _tokenizer(cfg)
    root = _run_folder(cfg)
    prep = prepare(cfg, tok, root / "rejects.jsonl")
    paths = write_run_files(root, cfg, prep, tok)
    has_val = bool(prep.rows("val"))
    scfg = sft_config(cfg, paths["train"], paths["val"] if has_val else None, root)
    result = run_stage("sft", scfg, callbacks=callbacks)
    return {"run_dir": root, "result": result, "prepared": prep,
            "final_model_dir": Path(getattr(result, "final_model_dir", root / "final_model"))}


def cmd_train(argv: list[str]) -> int:
    usage = ("usage: simtune train reviews --config FILE [--no_profile] [--no_history] [--with_rating] "
             "[--key value ...]")
    if _help(argv, usage):
        return 0
    cfg = load_config(argv)
    out = train(cfg)
    r = out["result"]
    print(f"trained {cfg.variant()} for {getattr(r, 'global_step', '?')} steps; run folder: {out['run_dir']}")
    print(f"next: simtune eval reviews --run {out['run_dir']}")
    return 0


# --------------------------------------------------------------------------- evaluation

@dataclass
class ReviewsEvalConfig(BaseConfig):
    """Evaluate a trained review model (or any model) on a run folder's test_samples.json, or
    a trained model on the users of another data folder (``--data_path``, ``--out``)."""

    run: Optional[str] = opt(None, "run folder holding test_samples.json (and final_model/)")
    model: Optional[str] = opt(None, "model to evaluate (default: <run>/final_model); with --data_path: a model "
                                     "trained by `train reviews` (RUN/final_model)")
    data_path: Optional[str] = opt(None, "apply the model to the users of this folder (same form as its training "
                                         "data; none of them trained on), prompts as the model's run made them")
    out: Optional[str] = opt(None, "with --data_path: the folder for the built samples and eval_report.json/.md")
    baselines_only: bool = opt(False, "score the two baselines alone (no model needed)")
    max_samples: Optional[int] = opt(None, "evaluate on at most this many test samples (spread over users)", min=1)
    max_new_tokens: Optional[int] = opt(None, "new tokens per generated review (default: the run's "
                                              "eval_max_new_tokens, else 96)", min=1)
    repetition_penalty: Optional[float] = opt(None, "decoding: > 1 discourages repeating tokens (default: the run's "
                                                    "eval_repetition_penalty, else 1)", min=1.0)
    no_repeat_ngram_size: Optional[int] = opt(None, "decoding: no n-gram of this size twice (default: the run's "
                                                    "eval_no_repeat_ngram_size, else 0 = off)", min=0)
    do_sample: Optional[bool] = opt(None, "decoding: sample instead of greedy (default: the run's eval_do_sample)")
    temperature: Optional[float] = opt(None, "decoding: sampling temperature (default: the run's eval_temperature)",
                                       min=1e-6)
    top_p: Optional[float] = opt(None, "decoding: nucleus mass (default: the run's eval_top_p)", min=1e-6, max=1.0)
    seed: int = opt(0, "seed for sampled decoding")
    split: str = opt("test", "score the run's test samples, or its val samples (to tune decoding on)",
                     choices=["test", "val"])
    batch_size: int = opt(8, "generation batch size", min=1)
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    dtype: str = opt("auto", "weights dtype", choices=["auto", "float32", "bfloat16", "float16"])
    output_subdir: str = opt("eval", "write the report into <run>/<output_subdir>/ (a relative path inside the run)")

    def validate(self) -> None:
        super().validate()
        if self.data_path is not None:
            if not self.model or not self.out or self.run:
                raise ConfigError(f"{self.source_of('data_path')}: --data_path needs --model and --out (and no --run)")
            return
        if not self.run:
            raise ConfigError(f"{self.source_of('run')}: give --run (a run folder), or --model, --data_path and --out")
        inside(self.run, self.output_subdir, "output_subdir", self.source_of("output_subdir"))


def spread_over_users(rows: list[dict], limit: int | None) -> list[dict]:
    """The first ``limit`` rows taking each user's test samples in turn (stable)."""
    if limit is None or limit >= len(rows):
        return list(rows)
    rank: dict[str, int] = {}
    keyed = []
    for i, r in enumerate(rows):
        k = rank.get(r["user_id"], 0)
        rank[r["user_id"]] = k + 1
        keyed.append((k, i, r))
    keyed.sort(key=lambda x: (x[0], x[1]))
    picked = sorted(keyed[:limit], key=lambda x: x[1])
    return [r for _, _, r in picked]


def load_eval_model(model_path: str, device: str = "auto", dtype: str = "auto"):
    """A model folder, 'default', or a PEFT adapter folder (its base is loaded first)."""
    from simtune.models import load_model, load_tokenizer
    p = Path(model_path)
    if p.is_dir() and (p / "adapter_config.json").is_file() and not (p / "config.json").is_file():
        from peft import PeftModel
        base = json.loads((p / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = PeftModel.from_pretrained(load_model(base, dtype=dtype, device=device), str(p))
        return model, load_tokenizer(base)  # the adapter folder has no config.json for the loader
    return load_model(model_path, dtype=dtype, device=device), load_tokenizer(model_path)


DECODING = {"max_new_tokens": 96, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "do_sample": False,
            "temperature": 1.0, "top_p": 1.0}  # the defaults; a run's config holds them as eval_<key>


def run_settings(run_dir: str | Path) -> tuple[str | None, dict]:
    """(variant, decoding settings ``eval_*``) of the config a run folder was built with
    (its training_config.json; (None, {}) without one)."""
    tc = Path(run_dir) / "training_config.json"
    d = json.loads(tc.read_text(encoding="utf-8")) if tc.is_file() else {}
    cfg = d.get("config", {})
    return d.get("variant"), {k: cfg[f"eval_{k}"] for k in DECODING if f"eval_{k}" in cfg}


def decoding_of(ec: ReviewsEvalConfig) -> dict:
    """The decoding keys the eval command was given (None: the run's own)."""
    return {k: getattr(ec, k) for k in DECODING}


def evaluate_run(run_dir: str | Path, model: str | None = None, max_samples: int | None = None,
                 batch_size: int = 8, device: str = "auto", dtype: str = "auto", output_subdir: str = "eval",
                 baselines_only: bool = False, split: str = "test", seed: int = 0, **given) -> dict:
    """Generate for the run's test (or val) samples and score them beside the two baselines.
    ``given``: keys of ``DECODING``; those left None are the run's own (``run_settings``),
    else the defaults. Sampled decoding is seeded with ``seed``."""
    from simtune.generation import GenerationConfig, generate
    from simtune.io import DataError
    run_dir = Path(run_dir)
    out = inside(run_dir, output_subdir, "output_subdir")
    unknown = set(given) - set(DECODING)
    if unknown:
        raise TypeError(f"evaluate_run() got unknown decoding settings: {sorted(unknown)}")
    variant, run_decoding = run_settings(run_dir)
    decoding = {**DECODING, **run_decoding, **{k: v for k, v in given.items() if v is not None}}
    ts = run_dir / f"{split}_samples.json"
    if not ts.is_file():
        raise DataError(ts, None, None, f"no {split}_samples.json in the run folder (train or `data reviews build` "
                                        "first)")
    rows = json.loads(ts.read_text(encoding="utf-8"))
    for i, r in enumerate(rows):
        for k in ("prompt", "response", "baseline_recent", "baseline_similar"):
            if not isinstance(r.get(k), str):
                raise DataError(ts, None, f"[{i}].{k}", "missing or not a string")
    rows = spread_over_users(rows, max_samples)
    model_path = model or str(run_dir / "final_model")
    systems: dict[str, list[str]] = {}
    preds: list[str] = [""] * len(rows)
    if baselines_only:
        model_path = "none"
    else:
        if not model and not Path(model_path).is_dir():
            raise DataError(model_path, None, None, "no final_model in the run folder; pass --model (or --baselines_only)")
        m, tok = load_eval_model(model_path, device, dtype)
        if decoding["do_sample"]:
            import torch
            torch.manual_seed(seed)
        preds = generate(m, tok, [r["prompt"] for r in rows], GenerationConfig(batch_size=batch_size, **decoding))
        preds = [p.strip() for p in preds]
        systems["model"] = preds
    systems[SYSTEM_RECENT] = [r["baseline_recent"] for r in rows]
    systems[SYSTEM_SIMILAR] = [r["baseline_similar"] for r in rows]
    report = evaluate_rows(rows, systems)
    refs = [r["response"] for r in rows]
    if "model" in systems:  # is the model above each baseline beyond chance (paired over the same samples)?
        report["paired"] = {f"{m}: model - {b}": paired_bootstrap(per_sample(m, preds, refs),
                                                                 per_sample(m, systems[b], refs))
                            for m in ("rougeL", "rouge1") for b in (SYSTEM_RECENT, SYSTEM_SIMILAR)}
    report.update(model=model_path, split=split, max_new_tokens=decoding["max_new_tokens"],
                  decoding={**decoding, **({"seed": seed} if decoding["do_sample"] else {})},
                  tokenisation="CJK characters; Latin words and numbers whole; punctuation dropped")
    report["variant"] = variant
    atomic_write_json(out / "eval_report.json", report)
    _write_jsonl(out / "predictions.jsonl", [{"user_id": r["user_id"], "film": r["film"], "timestamp": r["timestamp"],
                                              "rating": r["rating"], "reference": r["response"], "generated": p,
                                              "baseline_recent": r["baseline_recent"],
                                              "baseline_similar": r["baseline_similar"]} for r, p in zip(rows, preds)])
    md = (f"# Review evaluation ({variant or 'model'}, {report['n']} {split} samples)\n\n"
          f"BLEU = corpus BLEU-4, ROUGE = mean F1, both x100 on characters; len in characters; "
          f"sentiment~rating = Spearman of the lexicon score with the star rating over {report['reference']['n_rated']} rated samples.\n\n"
          + markdown_table(report["systems"], report["reference"]) + "\n"
          + (f"\nThe model against each baseline, paired bootstrap over the {report['n']} samples:\n\n"
             + paired_table(report["paired"]) + "\n" if "paired" in report else ""))
    atomic_write_text(out / "eval_report.md", md)
    report["report_dir"] = str(out)
    return report


def evaluate_unseen(ec: ReviewsEvalConfig) -> dict:
    """``ec.model`` (``RUN/final_model``) on the users of ``ec.data_path``: the data is built
    as the model's run built its own (its config, ``data_path`` replaced) into ``ec.out``;
    refused when any of those users is one the run trained on (same pseudonyms: same salt)."""
    from simtune.io import DataError
    model = Path(ec.model)
    run = model.parent
    tc = run / "training_config.json"
    if not tc.is_file():
        raise ConfigError(f"{ec.source_of('model')}: {model} is not a run's final_model (no {tc}); --data_path "
                          "applies a model trained by `simtune train reviews`")
    values = {**json.loads(tc.read_text(encoding="utf-8"))["config"], "data_path": ec.data_path,
              "output_dir": ec.out, "resume": False}
    cfg = ReviewsConfig.from_dict(values, source=str(tc))
    tok = _tokenizer(cfg)
    root = _run_folder(cfg)
    prep = prepare(cfg, tok, root / "rejects.jsonl")
    trained = {json.loads(x)["user_id"] for name in ("train", "val") if (run / "data" / f"{name}.jsonl").is_file()
               for x in (run / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()}
    seen = trained & set(prep.split.per_user)
    if seen:
        raise DataError(ec.data_path, None, "user", f"{len(seen)} of its {len(prep.split.per_user)} users were trained "
                                                    f"on by {model}; apply it to users it never saw")
    write_run_files(root, cfg, prep, tok)
    return evaluate_run(root, str(model), ec.max_samples, ec.batch_size, ec.device, ec.dtype, ".", seed=ec.seed,
                        **decoding_of(ec))


def cmd_eval(argv: list[str]) -> int:
    usage = ("usage: simtune eval reviews --run RUN_DIR [--model PATH] [--max_samples N] [--max_new_tokens N]\n"
             "       simtune eval reviews --model RUN/final_model --data_path OTHER_FOLDER --out DIR   (unseen users)\n"
             "       simtune eval reviews --config FILE [--key value ...]   (builds the test split, evaluates "
             "model_name_or_path untrained)")
    if _help(argv, usage, ReviewsEvalConfig):
        return 0
    path, rest = split_config_arg(argv)
    if path is not None:
        cfg = ReviewsConfig.load(path, rest)
        tok = _tokenizer(cfg)
        root = _run_folder(cfg, f"eval_{cfg.variant()}")
        prep = prepare(cfg, tok, root / "rejects.jsonl")
        write_run_files(root, cfg, prep, tok)
        report = evaluate_run(root, cfg.model_name_or_path, cfg.eval_max_samples, batch_size=cfg.eval_batch_size,
                              device=cfg.device, dtype=cfg.dtype, seed=cfg.seed)
    else:
        ec = ReviewsEvalConfig.load(None, rest)
        report = evaluate_unseen(ec) if ec.data_path else evaluate_run(
            ec.run, ec.model, ec.max_samples, ec.batch_size, ec.device, ec.dtype, ec.output_subdir, ec.baselines_only,
            ec.split, ec.seed, **decoding_of(ec))
    print(markdown_table(report["systems"], report["reference"]))
    print(f"\nreport: {report['report_dir']}/eval_report.md")
    return 0


# --------------------------------------------------------------------------- ablation

ABLATION_VARIANTS = [(True, True), (True, False), (False, True), (False, False)]


def plot_ablation(rows: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metrics = [("bleu", "BLEU"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L")]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names)), 4))
    width = 0.8 / len(metrics)
    for j, (k, label) in enumerate(metrics):
        ax.bar([i + j * width for i in range(len(names))], [rows[n].get(k) or 0.0 for n in names], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))])
    short = {SYSTEM_RECENT: "baseline:\nmost recent", SYSTEM_SIMILAR: "baseline:\nmost film-like"}
    ax.set_xticklabels([short.get(n, n) for n in names], fontsize=8)
    ax.set_ylabel("score (x100, characters)")
    ax.set_title("review ablation: profile / history on and off, beside the baselines")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def ablation_pairs(predictions: dict[str, Path]) -> dict[str, dict]:
    """ROUGE-L differences between variants (paired over the test samples, read from each
    variant's predictions.jsonl): history with and without the profile, the profile with and
    without history, and the full prompt against none."""
    texts = {n: [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
             for n, p in predictions.items()}
    names = list(texts)
    full, prof, hist, none = (next((n for n in names if n.split("+rating")[0] == v), None)
                              for v in ("profile+history", "profile_only", "history_only", "neither"))
    out = {}
    for a, b in ((full, prof), (hist, none), (full, hist), (prof, none), (full, none)):
        if a and b:
            refs = [r["reference"] for r in texts[a]]
            out[f"{a} - {b}"] = paired_bootstrap(per_sample("rougeL", [r["generated"] for r in texts[a]], refs),
                                                 per_sample("rougeL", [r["generated"] for r in texts[b]], refs))
    return out


def ablate(cfg: ReviewsConfig) -> dict:
    """Train and evaluate the four variants on one config; one table and one plot."""
    root = _run_folder(cfg, f"ablation_{cfg.run_name}")
    rows: dict[str, dict] = {}
    runs: dict[str, Any] = {}
    baselines: dict[str, dict] = {}
    reference = None
    for use_profile, use_history in ABLATION_VARIANTS:
        name = variant_name(use_profile, use_history, cfg.with_rating)
        vcfg = dataclasses.replace(cfg, no_profile=not use_profile, no_history=not use_history,
                                   output_dir=str(root / name), resume=False)
        vcfg.validate()
        out = train(vcfg)
        rep = evaluate_run(out["run_dir"], str(out["final_model_dir"]), cfg.eval_max_samples,
                           batch_size=cfg.eval_batch_size, device=cfg.device, dtype=cfg.dtype, seed=cfg.seed)
        rows[name] = rep["systems"]["model"]
        runs[name] = {"run_dir": str(out["run_dir"]), "global_step": getattr(out["result"], "global_step", None),
                      "n": rep["n"]}
        if not baselines:  # the test split and baselines are the same for every variant
            baselines = {k: v for k, v in rep["systems"].items() if k != "model"}
            reference = rep["reference"]
    table = {**rows, **baselines}
    report = {"variants": runs, "table": table, "reference": reference, "with_rating": cfg.with_rating,
              "data_path": cfg.data_path, "model": cfg.model_name_or_path,
              "paired": ablation_pairs({n: Path(r["run_dir"]) / "eval" / "predictions.jsonl" for n, r in runs.items()})}
    atomic_write_json(root / "ablation.json", report)
    md = (f"# Review ablation ({next(iter(runs.values()))['n']} test samples; model {cfg.model_name_or_path})\n\n"
          "BLEU = corpus BLEU-4, ROUGE = mean F1, both x100 on characters; len in characters; "
          "sentiment~rating = Spearman of the lexicon score with the star rating.\n\n"
          + markdown_table(table, reference) + "\n\n"
          "What history and profile add, ROUGE-L, paired bootstrap over the same test samples:\n\n"
          + paired_table(report["paired"]) + "\n")
    atomic_write_text(root / "ablation.md", md)
    plot_ablation(table, root / "ablation.png")
    report["root"] = str(root)
    return report


def cmd_ablate(argv: list[str]) -> int:
    usage = "usage: simtune ablate reviews --config FILE [--with_rating] [--key value ...]"
    if _help(argv, usage):
        return 0
    cfg = load_config(argv)
    report = ablate(cfg)
    print(markdown_table(report["table"], report["reference"]))
    print(f"\nwrote {report['root']}/ablation.md, ablation.json, ablation.png")
    return 0
