"""`simtune demo`: the social recipe end to end on the embedded default model and data.

synthetic Weibo-style corpus -> interaction trees -> candidate-pool samples -> training of
the default model (SmolLM2-135M-Instruct): the candidate scorer (who reacts) and the
reactions of the chosen (`simtune train social who`) -> evaluation on the held-out (later)
split beside baselines that need no model and the rule that made the data -> a few held-out
posts simulated out of everyone, beside their real cascades -> a short report with plots
(report.md) and the report page (report.html, :mod:`simtune.report_html`). Sized to finish in
under 15 minutes on a 2-core CPU; every size is an option.

The same on a real corpus: ``--inputs`` (Weibo API lines, with ``--profiles``), ``--ced_dir``
or ``--diffusion`` (who-joins cascade files). Then the training pools are spread over the
train split's time, the evaluated val samples are capped (``--eval_samples``), and the
report says what was left out.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from simtune.config import BaseConfig, opt

WHO_DEFAULT = "(default: `simtune train social who`'s, configs/social/who_default.yaml)"


@dataclass
class DemoConfig(BaseConfig):
    """`simtune demo`: the main job end to end (read through the same config reader as every
    command: a YAML file with --config, or --key value)."""

    model: str = opt("default", "model to fine-tune (default: the embedded SmolLM2-135M-Instruct)")
    out: str = opt("outputs", "root of the outputs")
    users: int = opt(300, "synthetic corpus: users", min=1)
    posts: int = opt(400, "synthetic corpus: posts", min=1)
    seed: int = opt(0, "seed of the corpus, the training and the evaluation")
    inputs: list[str] = opt([], "a real corpus: Weibo API JSON-lines files (comma-separated)")
    profiles: Optional[str] = opt(None, "user profiles JSON for --inputs")
    ced_dir: Optional[str] = opt(None, "a real corpus: a weibo-ced folder")
    diffusion: list[str] = opt([], "a real corpus: who-joins cascade files (uid time,uid time,...; comma-separated)")
    window_days: Optional[float] = opt(None, "keep reactions up to this many days after the post (default: 7; no "
                                             "limit for --diffusion)", min=0.0)
    max_pool: Optional[int] = opt(None, "skip (and count) samples whose pool would be larger (default: the samples' "
                                        "1000; 60 for --diffusion)", min=1)
    train_samples: Optional[int] = opt(None, "training pools (synthetic: the oldest 360 of the train split; a real "
                                             "corpus: 240 spread over it); the newest 20% of them tune the decision",
                                       min=1)
    train_max_depth: Optional[int] = opt(None, "train on samples of depth <= this (default 1; 0 for --diffusion, "
                                               "whose trees have one level)", min=0)
    epochs: float = opt(1.0, "training epochs", min=0.0)
    learning_rate: Optional[float] = opt(None, WHO_DEFAULT, min=0.0)
    who_layer: Optional[int] = opt(None, WHO_DEFAULT, min=1)
    who_train_from: Optional[int] = opt(None, WHO_DEFAULT, min=0)
    text_from_layer: Optional[int] = opt(None, WHO_DEFAULT, min=0)
    text_share: Optional[float] = opt(None, WHO_DEFAULT, min=0.0, max=1.0)
    eval_samples: Optional[int] = opt(None, "val samples to evaluate (default: all of the synthetic corpus; 300 of "
                                            "a real one)", min=1)
    batch_size: int = opt(8, "evaluation batch size", min=1)
    sim_posts: int = opt(3, "val posts simulated out of everyone and compared with their real cascades", min=0)
    verbose: bool = opt(False, "also the libraries' own output: weight loading and saving bars, transformers' notices")


USAGE = (__doc__.strip() + "\n\nusage: simtune demo [--config FILE] [--key value ...]   (a real corpus: --inputs, "
         "--ced_dir or --diffusion)")


@contextmanager
def libraries_to_log(path: Path):
    """One progress bar per phase on the terminal: while in this context, transformers'
    notices and Python's warnings (a FutureWarning, say) go to ``path`` instead, and its
    weight loading and shard writing bars are off; all is as before afterwards."""
    import logging
    from transformers.utils import logging as hf_logging
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    warn = logging.getLogger("py.warnings")
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.disable_default_handler()
    hf_logging.add_handler(handler)
    hf_logging.set_verbosity_info()
    logging.captureWarnings(True)
    warn.addHandler(handler)
    warn.propagate = False
    try:
        yield
    finally:
        warn.propagate = True
        warn.removeHandler(handler)
        logging.captureWarnings(False)
        hf_logging.set_verbosity(level)
        hf_logging.remove_handler(handler)
        hf_logging.enable_default_handler()
        hf_logging.enable_progress_bar()
        handler.close()


def main(argv: list[str]) -> int:
    a = DemoConfig.from_argv(argv, USAGE)
    if a is None:  # --help
        return 0
    if a.verbose:
        return run(a)
    log = Path(a.out) / "social" / "demo_libraries.log"
    print(f"the libraries' own output goes to {log} (--verbose: here)")
    with libraries_to_log(log):
        return run(a)


def run(a: DemoConfig) -> int:
    from simtune.recipes.social.evaluate import SocialEvalConfig, evaluate
    from simtune.recipes.social.pipeline import prepare
    from simtune.recipes.social.model.who_train import WhoTrainConfig, train

    timings: dict[str, float] = {}
    t = time.time()
    corpus = corpus_name(a)
    real = corpus != "synthetic"
    diffusion = bool(a.diffusion)
    if a.train_max_depth is None:
        a.train_max_depth = 0 if diffusion else 1
    if a.eval_samples is None and real:
        a.eval_samples = 300
    if a.train_samples is None:
        a.train_samples = 240 if real else 360
    data_root = Path(a.out) / "social" / ("demo_data" if not real else f"demo_{corpus}")
    print(f"[1/5] {corpus} corpus -> trees -> samples in {data_root}")
    data = prepare(data_root, synthetic=not real, users=a.users, posts=a.posts, seed=a.seed, inputs=a.inputs,
                   profiles=a.profiles, ced_dir=a.ced_dir, diffusion=a.diffusion,
                   window_days=a.window_days if a.window_days is not None else (36500.0 if diffusion else None),
                   max_depth=max(a.train_max_depth, 1) if not diffusion else 0,
                   max_pool=a.max_pool or (60 if diffusion else None), noise_users="all" if diffusion else None)
    timings["data"] = time.time() - t
    counts = data.summaries["samples"]["counts"]
    if not counts.get("samples_val"):
        raise SystemExit(f"simtune demo: no val samples in {data.samples}: the corpus's later 15% of posts made no "
                         f"sample (see {data.samples / 'summary.json'})")
    print(f"      {counts.get('samples_train')} train / {counts.get('samples_val')} val samples ({timings['data']:.1f}s)")

    t = time.time()
    given = {k: getattr(a, k) for k in ("learning_rate", "who_layer", "who_train_from", "text_from_layer", "text_share")
             if getattr(a, k) is not None}
    if diffusion and a.text_share is None:
        given["text_share"] = 0.1  # who-joins reactions are all '"repost", "text": ""': little to learn
    cfg = WhoTrainConfig.load(None, [], model_name_or_path=a.model, samples_dir=str(data.samples),
                              max_samples=a.train_samples, max_samples_from="spread" if real else "oldest",
                              max_depth=a.train_max_depth, num_train_epochs=a.epochs,
                              logging_steps=5, save_steps=1000, run_name="demo", output_root=a.out,
                              report_to=["tensorboard"], seed=a.seed, **given)
    print(f"[2/5] training {a.model}: candidate scorer (layers {cfg.who_train_from}-{cfg.who_layer - 1}) and reactions "
          f"(layers {cfg.text_from_layer}+) on {a.train_samples} pools of depth <= {a.train_max_depth}")
    result = train(cfg)
    exp = result.experiment
    timings["train"] = time.time() - t
    losses = [m["loss"] for m in exp.read_metrics() if "loss" in m]
    who_losses = [m["who_loss"] for m in exp.read_metrics() if "who_loss" in m]
    print(f"      who loss {who_losses[0]:.3f} -> {who_losses[-1]:.3f} in {result.global_step} steps ({timings['train']:.0f}s)")

    t = time.time()
    print("[3/5] evaluation on the val split beside baselines")
    from simtune.export import load_trained
    model, tok = load_trained(str(result.final_model_dir))
    ecfg = SocialEvalConfig.load(None, [], model=str(result.final_model_dir), samples_dir=str(data.samples),
                                 split="val", build_dir=str(data.build), out=str(exp.root / "eval"),
                                 limit=a.eval_samples, batch_size=a.batch_size, seed=a.seed,
                                 reactions=not diffusion)  # who-joins corpora have no texts and one action
    report = evaluate(ecfg, model=model, tok=tok)
    timings["eval"] = time.time() - t

    t = time.time()
    print(f"[4/5] {a.sim_posts} held-out posts simulated out of everyone (every user active before each), beside "
          "the real cascades")
    casc = evaluate(SocialEvalConfig.load(None, [], cascades=True, model=str(result.final_model_dir),
                                          samples_dir=str(data.samples), build_dir=str(data.build), split="val",
                                          out=str(exp.root / "cascades"), limit=a.sim_posts, seed=a.seed,
                                          depth_limit=a.train_max_depth + 1, reactions=not diffusion),
                    model=model, tok=tok)
    timings["simulate"] = time.time() - t
    print("[5/5] report")
    write_report(exp.root, report, losses, who_losses, casc, timings, a, data)
    print((exp.root / "report.md").read_text())
    from simtune.io import atomic_write_json
    from simtune.report_html import write_html
    atomic_write_json(exp.root / "timings.json", {k: round(v, 1) for k, v in timings.items()})  # the page's timings
    page = write_html(exp.root)
    print(f"the report page (opens offline in a browser): {page.path}")
    print(f"experiment folder: {exp.root}")
    return 0


def corpus_name(a) -> str:
    given = [k for k in ("inputs", "ced_dir", "diffusion") if getattr(a, k)]
    if len(given) > 1:
        raise SystemExit(f"simtune demo: one corpus at a time, got {', '.join('--' + k for k in given)}")
    if not given:
        if a.profiles:
            raise SystemExit("simtune demo: --profiles goes with --inputs")
        return "synthetic"
    return {"inputs": "weibo", "ced_dir": "ced"}.get(given[0]) or Path(a.diffusion[0]).resolve().parent.name


def left_out(data) -> list[str]:
    """What the data steps left out, in the report's words."""
    s = data.summaries["samples"]
    c, b = s["counts"], data.summaries["build"]
    out = [f"Data: {b['counts']['posts_out']} posts ({b['counts']['posts_rejected']} rejected, "
           f"{b['dropped']['after_window']} reactions after the window dropped); {c['samples_train']} train and "
           f"{c['samples_val']} val samples; {s['skipped']['pool_too_large']} samples skipped because their pool "
           f"would exceed max_pool {s['config']['max_pool']} (the largest cascades)."]
    return out


def verdict(results: dict, depth: str) -> str:
    """One sentence: the model's who-F1 at ``depth`` against the strongest baseline, the
    numbers alone's (prior.py) and the oracle's where there are."""
    f = lambda v: (v.get(depth) or {}).get("f1") or 0.0  # noqa: E731
    m = f(results["model"])
    base = {k[len("baseline: "):]: f(v) for k, v in results.items() if k.startswith("baseline: ")}
    best, b = max(base.items(), key=lambda kv: kv[1])
    s = (f"depth {depth}: who-F1 {m:.3f}, " + (f"above every baseline (the strongest, {best}, {b:.3f})" if m > b
                                                else f"NOT above the strongest baseline, {best} ({b:.3f})"))
    from simtune.recipes.social.evaluate import NUMBERS_ONLY_ROW
    if NUMBERS_ONLY_ROW in results:
        s += f"; the candidate lines' numbers alone (learned, no LM) score {f(results[NUMBERS_ONLY_ROW]):.3f}"
    oracle = next((v for k, v in results.items() if k.startswith("oracle")), None)
    if oracle is not None:
        s += f"; the rule that made the data scores {f(oracle):.3f}"
    return s


def write_report(root: Path, report: dict, losses: list[float], who_losses: list[float], casc: dict, timings: dict,
                 a, data) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simtune.io import atomic_write_text
    from simtune.recipes.social.cascades import markdown
    from simtune.recipes.social.evaluate import markdown_table
    results = report["results"]
    depths = [d for d in next(iter(results.values())) if d != "all"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(range(1, len(losses) + 1), losses, label="total")
    ax1.plot(range(1, len(who_losses) + 1), who_losses, label="who (BCE over the pool)")
    ax1.set_title("training loss")
    ax1.set_xlabel("log step")
    ax1.legend(fontsize=8)
    width = 0.8 / len(results)
    for k, (name, res) in enumerate(results.items()):
        vals = [res[d]["f1"] or 0 for d in depths]
        ax2.bar([i + k * width for i in range(len(depths))], vals, width, label=name)
    ax2.set_xticks([i + 0.4 - width / 2 for i in range(len(depths))], [f"depth {d}" for d in depths])
    ax2.set_title("who-F1 on the val split")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(root / "report.png", dpi=100)
    plt.close(fig)
    speed = report.get("speed") or {}
    text = [f"# simtune demo: social cascades ({corpus_name(a)} corpus) on {a.model}", "",
            f"Trained on {a.train_samples} pools of depth <= {a.train_max_depth} (candidate scorer + reactions); "
            f"evaluated on {'all ' if a.eval_samples is None else ''}{report['n_samples']} later (val) samples.",
            *left_out(data), "",
            *[f"- {verdict(results, d)}" for d in depths], "",
            f"Speed: who {speed.get('who_samples_per_s', 0):.2f} samples/s, reactions "
            f"{speed.get('reactions_samples_per_s', 0):.2f} samples/s, overall {speed.get('samples_per_s', 0):.2f}.", "",
            markdown_table(results),
            f"## {casc['summary']['cascades']} held-out posts simulated out of everyone", "",
            "Each post alone, with every user active before it as the pool (no real reactor given), to depth "
            f"{casc['depth_limit']}; who is named by the scores recalibrated for everyone (who.json's universe "
            "calibration). Conventions: `simtune/recipes/social/cascades.py`; the whole val split: "
            "`simtune eval social --cascades true` (docs/social.md).", "",
            markdown(casc["summary"])]
    text += ["## Time", "", " | ".join(f"{k} {v:.0f}s" for k, v in timings.items()),
             f"total {sum(timings.values()):.0f}s", "", "![report](report.png)", ""]
    atomic_write_text(root / "report.md", "\n".join(text))
