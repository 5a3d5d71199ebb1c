"""`simtune train social who`: train the candidate scorer and the reactions (who.py) on social samples.

Each training pool gives two losses in one step:
- **who**: binary cross-entropy over every candidate of the pool (real reactors 1, noise
  users 0), on the yes/no score read after ``who_layer`` layers; it trains layers
  ``[who_train_from, who_layer)``;
- **reactions**: next-token cross-entropy on what each real reactor wrote (its action and
  text, as that user's one-line answer after its line), through the whole model; it trains
  the layers from ``text_from_layer`` up (``text_share`` of the pools carry it: its forward
  pass runs every layer, so it is the dearer of the two).
The two layer ranges are clipped to ``max_grad_norm`` apart, so the who step is the same
with or without reactions in the batch.

The split's newest pools (``calibration_share`` of ``max_samples``) take no gradient step: after training
the model scores them, the numbers prior is fitted on them (``numbers_prior``, prior.py), and
the per-depth thresholds with the best mean who-F1 are saved in
``final_model/who.json`` (decision.WhoDecision), with the weights' fingerprint. A transformers
``Trainer`` runs the loop: checkpoints, ``--resume``, metrics.jsonl and trackers as in
every stage.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import NamedTuple, Optional

from simtune.config import ConfigError, opt
from simtune.stage_configs import TrainingConfig
from simtune.io import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class WhoTrainConfig(TrainingConfig):
    """The candidate scorer (who reacts) and the reactions of the chosen, from social samples."""

    train_file: Optional[str] = opt(None, "not used: the data comes from samples_dir")
    samples_dir: Optional[str] = opt(None, "output folder of `data social samples` (train.parquet)", required=True)
    max_depth: int = opt(1, "train on samples of depth <= this", min=0)
    max_samples_from: str = opt("oldest", "which max_samples pools: the 'oldest', or 'spread' evenly over the train "
                                          "split's time (for corpora whose behaviour builds up over time)",
                                choices=["oldest", "spread"])
    calibration_share: float = opt(0.2, "this share of max_samples are the train split's newest pools, kept out of "
                                        "training, on which the decision is tuned", min=0.0, max=0.9)
    finetuning_type: str = opt("layers", "layers: train who_train_from..who_layer-1 and text_from_layer.. (the rest "
                                         "frozen); full; lora; qlora", choices=["layers", "full", "lora", "qlora"])
    who_layer: int = opt(12, "the score is read after this many decoder layers (early exit)", min=1)
    who_train_from: int = opt(6, "layers: the who loss trains layers from this one up to who_layer - 1", min=0)
    text_from_layer: int = opt(24, "the reaction loss trains the layers from this one up (it stops below)", min=0)
    text_loss_weight: float = opt(1.0, "weight of the reaction loss (0: train who only)", min=0.0)
    text_share: float = opt(0.34, "share of the training pools whose reactions are trained", min=0.0, max=1.0)
    universe_roots: int = opt(20, "after training, the newest calibration roots (at most this many) are asked again with "
                                  "every user active before them as the pool, to calibrate the scores for simulation "
                                  "out of everyone (universe.py; 0: skip)", min=0)
    universe_negatives: int = opt(32, "universe calibration: non-reactors sampled per root and depth (weighted "
                                      "up to the universe)", min=1)
    universe_candidates: int = opt(300, "out of everyone, the scorer is asked about the users a no-model rule ranks "
                                        "first (candidates.py), this many per question; calibration and simulation "
                                        "use the same (0: everyone)", min=0)
    numbers_prior: bool = opt(True, "after training, combine the score with the numbers each candidate line states "
                                    "(earlier acts, this author, alongside) by a logistic fit on the calibration "
                                    "pools (prior.py); the same fit without the score is reported beside the model")
    max_tokens: int = opt(2048, "tokens per packed row when scoring (a longer pool is scored in chunks)", min=64)
    learning_rate: float = opt(1e-3, "peak learning rate", min=0.0)
    lr_scheduler_type: str = opt("cosine", "learning-rate schedule", choices=["linear", "cosine", "constant"])
    warmup_ratio: float = opt(0.1, "share of steps spent warming up", min=0.0, max=1.0)
    per_device_train_batch_size: int = opt(2, "pools per step", min=1)
    report_to: list[str] = opt(["tensorboard"], "trackers besides metrics.jsonl",
                               choices=["tensorboard", "wandb", "swanlab", "trackio", "none"])
    recipe: str = opt("social", "recipe name: outputs/<recipe>/<run_name>_<timestamp>/")
    run_name: str = opt("who", "experiment name")

    def validate(self) -> None:
        super().validate()
        if self.freeze_first_n_layers or self.trainable_prefixes:
            raise ConfigError(f"{self.source_of('freeze_first_n_layers')}: 'freeze_first_n_layers' / "
                              "'trainable_prefixes' are not used by the who stage: its layers are set by "
                              "who_train_from, who_layer and text_from_layer")
        if self.who_train_from >= self.who_layer:
            raise ConfigError(f"{self.source_of('who_train_from')}: 'who_train_from' ({self.who_train_from}) must be "
                              f"below 'who_layer' ({self.who_layer})")
        if self.eval_file:
            raise ConfigError(f"{self.source_of('eval_file')}: 'eval_file' is not used by the who stage")
        if self.eval_strategy != "no" or self.eval_split:
            raise ConfigError(f"{self.source_of('eval_strategy')}: the who stage evaluates with `simtune eval social`; "
                              "set eval_strategy: no and eval_split: 0")


# --------------------------------------------------------------------------- data

class Held(NamedTuple):
    """A calibration pool: held out of training, scored after it to tune the decision."""
    pool: object      # who.Pool
    depth: int
    root_id: str


def load_pools(cfg: WhoTrainConfig, tok):
    """(training examples, calibration pools) out of the split's samples of depth <= max_depth:
    ``calibration_share`` of ``max_samples`` pools are the split's newest (the nearest in time
    to what the model will meet: a threshold tuned on older pools drifts), and the rest are
    the oldest of the others (or spread over them). An example is (pool, with_text)."""
    from simtune.recipes.social.evaluate import load_split
    from simtune.recipes.social.model.who import encode_pool

    cols = ["sample_id", "root_id", "depth", "time", "prompt", "candidates", "true_users", "true_actions", "true_texts"]
    rows = [r for r in load_split(cfg.samples_dir, "train", cols) if r["depth"] <= cfg.max_depth]
    rows.sort(key=lambda r: (r["time"], r["sample_id"]))
    n_cal = int(round(min(len(rows), cfg.max_samples or len(rows)) * cfg.calibration_share))
    fit, cal = rows[:len(rows) - n_cal], rows[len(rows) - n_cal:]
    n_fit = (cfg.max_samples - n_cal) if cfg.max_samples else len(fit)
    if cfg.max_samples_from == "spread" and len(fit) > n_fit:
        fit = [fit[int(k * len(fit) / n_fit)] for k in range(n_fit)]
    else:
        fit = fit[:n_fit]
    if not fit:
        raise ConfigError(f"{cfg.samples_dir}: no training samples of depth <= {cfg.max_depth} left after holding out "
                          f"{n_cal} for calibration")
    enc = lambda r: encode_pool(tok, r["prompt"], r["candidates"], r["true_users"], r["true_actions"],  # noqa: E731
                                r["true_texts"], where=f"{cfg.samples_dir}/train.parquet: sample {r['sample_id']}")
    rng = random.Random(cfg.seed)
    examples = [(enc(r), rng.random() < cfg.text_share and cfg.text_loss_weight > 0) for r in fit]
    return examples, [Held(enc(r), r["depth"], r["root_id"]) for r in cal]


class Collator:
    """A batch of (pool, with_text) -> the packed scoring rows and, where asked, the reaction rows."""

    def __init__(self, pad_id: int, max_tokens: int):
        self.pad_id, self.max_tokens = pad_id, max_tokens

    def __call__(self, examples):
        import torch

        from simtune.recipes.social.model.who import pack, score_rows, text_row
        pools = [p for p, _ in examples]
        rows, _ = score_rows(pools, self.max_tokens)
        text = [t for t in (text_row(p) for p, with_text in examples if with_text) if t is not None]
        return {"score": pack(rows, self.pad_id),
                "who_labels": torch.tensor([y for p in pools for y in p.labels], dtype=torch.float),
                "text": pack(text, self.pad_id, with_labels=True) if text else None}


def trainable_layers(model, cfg: WhoTrainConfig) -> dict:
    """finetuning_type 'layers': train the who range and the reaction range, freeze the rest."""
    from simtune.models import _layer_index
    from simtune.recipes.social.model.who import n_layers
    n = n_layers(model)
    if cfg.who_layer > n:
        raise ConfigError(f"{cfg.source_of('who_layer')}: 'who_layer' {cfg.who_layer}, but the model has {n} layers")
    train = set(range(cfg.who_train_from, cfg.who_layer))
    if cfg.text_loss_weight > 0:
        train |= set(range(cfg.text_from_layer, n))
    counts = {"trainable": 0, "frozen": 0}
    for name, p in model.named_parameters():
        on = _layer_index(name) in train
        p.requires_grad_(on)
        counts["trainable" if on else "frozen"] += p.numel()
    return counts


def layer_groups(model, cfg: WhoTrainConfig):
    """finetuning_type 'layers': (the who layers' trainable parameters, the rest trainable);
    None for the other types (their trainable parameters are not split by layer)."""
    if cfg.finetuning_type != "layers":
        return None
    from simtune.models import _layer_index
    who, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            i = _layer_index(name)
            (who if i is not None and cfg.who_train_from <= i < cfg.who_layer else rest).append(p)
    return who, rest


# --------------------------------------------------------------------------- the trainer

def make_trainer_class():
    from transformers import Trainer

    class WhoTrainer(Trainer):
        """compute_loss = who BCE + text_loss_weight x reaction CE (who.py); both logged."""

        def __init__(self, *a, who_cfg: WhoTrainConfig, decision, **kw):
            super().__init__(*a, **kw)
            self.who_cfg, self.decision = who_cfg, decision
            self._parts: dict[str, list[float]] = {"who_loss": [], "text_loss": []}

        def _prepare_inputs(self, inputs):
            return inputs  # packed rows: who.py moves them to the model's device

        def _clip_grad_norm(self, model):
            """Clip the who layers and the reaction layers each to max_grad_norm. Why: the two
            losses train disjoint layers, and one global norm let the reaction loss's larger
            gradients shrink the who step on every pool with text (seed 1 of the demo corpus
            went from who-F1 0.77 to 0.63). Sharded engines keep the library's global clip."""
            groups = layer_groups(model, self.who_cfg)
            if groups is None or self.accelerator.distributed_type.value in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):
                return super()._clip_grad_norm(model)
            norms = [self.accelerator.clip_grad_norm_(g, self.args.max_grad_norm) for g in groups if g]
            return sum(n.float() ** 2 for n in norms) ** 0.5

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch

            from simtune.recipes.social.model.who import score_logits, text_loss
            c = self.who_cfg
            logits = score_logits(model, inputs["score"], self.decision)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, inputs["who_labels"].to(logits.device))
            self._parts["who_loss"].append(loss.item())
            if inputs["text"] is not None:
                t = text_loss(model, inputs["text"], c.text_from_layer)
                self._parts["text_loss"].append(t.item())
                loss = loss + c.text_loss_weight * t
            return (loss, None) if return_outputs else loss

        def log(self, logs, *a, **kw):
            for k, v in self._parts.items():
                if v and "loss" in logs:
                    logs[k] = sum(v) / len(v)
                    v.clear()
            super().log(logs, *a, **kw)

    return WhoTrainer


def calibrate(model, tok, cal, dec, cfg: WhoTrainConfig):
    """Complete the decision: the weights' fingerprint, the rules tuned on the held-out pools
    (with none held out, a fixed 0.5), and the universe calibration on their newest roots."""
    from simtune.recipes.social.model.decision import tune
    from simtune.recipes.social.universe import calibrate_universe
    from simtune.recipes.social.model.who import fingerprint, pool_probs
    dec.fingerprint = fingerprint(model)
    dec.thresholds = {"0": 0.5}
    if not cal:
        log.warning("calibration_share 0: no pools to tune the threshold on; 0.5 is used")
        dec.calibration = {"pools": 0}
        return dec
    dec.prior, dec.numbers_only = [], {}
    probs = pool_probs(model, tok, [h.pool for h in cal], dec)
    labels, depths = [h.pool.labels for h in cal], [h.depth for h in cal]
    extra = {}
    if cfg.numbers_prior:
        probs, extra = fit_prior(probs, [h.pool.numbers for h in cal], labels, depths, dec)
    t = tune(probs, labels, depths)
    dec.thresholds, dec.at_least_one, dec.rules, dec.shares = t.thresholds, t.at_least_one, t.rules, t.shares
    dec.calibration = {"pools": len(cal), "per_depth": t.report, **extra}
    build = samples_build_dir(cfg.samples_dir)
    if cfg.universe_roots and build:
        roots = list(dict.fromkeys(h.root_id for h in reversed(cal)))[:cfg.universe_roots]
        dec.calibration["universe"] = calibrate_universe(model, tok, dec, build, roots, cfg.max_depth,
                                                         cfg.universe_negatives, cfg.seed,
                                                         candidates=cfg.universe_candidates)
    elif cfg.universe_roots:
        log.warning("%s: its summary names no build folder; no universe calibration", cfg.samples_dir)
    return dec


def fit_prior(probs, numbers, labels, depths, dec):
    """Fit ``dec.prior`` and ``dec.numbers_only`` (prior.py) on the calibration pools; returns
    the pools' probabilities under the prior and the calibration report of what was fitted
    (the scorer alone's and the numbers alone's F1 with their own tuned rules, on the same
    pools the fits saw, so they flatter the fits)."""
    from simtune.recipes.social.model.decision import logit, tune
    from simtune.recipes.social.model.prior import FEATURES, apply, fit
    logits = [[logit(p) for p in ps] for ps in probs]
    dec.prior = fit(logits, numbers, labels)
    alone = fit(None, numbers, labels)
    t = tune([apply(alone, None, ns) for ns in numbers], labels, depths)
    dec.numbers_only = {"weights": alone, "thresholds": t.thresholds, "at_least_one": t.at_least_one,
                        "rules": t.rules, "shares": t.shares}
    report = {"prior_features": list(FEATURES), "scorer_alone": tune(probs, labels, depths).report,
              "numbers_only": t.report}
    return [apply(dec.prior, lg, ns) for lg, ns in zip(logits, numbers)], report


def samples_build_dir(samples_dir: str) -> str | None:
    """The build folder a samples folder was made from (its summary.json), if it still exists."""
    from pathlib import Path

    from simtune.recipes.social.evaluate import _summary_field
    build = _summary_field(Path(samples_dir), "build_dir")
    return build if build and (Path(build) / "trees.jsonl").is_file() else None


def train(cfg: WhoTrainConfig):
    from transformers import TrainingArguments, set_seed

    from simtune.experiment import Experiment
    from simtune.models import apply_finetuning, count_parameters, load_model_and_tokenizer
    from simtune.recipes.social.model.decision import WhoDecision
    from simtune.recipes.social.model.who import NO, YES, init_score, token_id
    from simtune.stages.common import StageContext, metrics_callback, train_and_finish, trl_args

    set_seed(cfg.seed)
    exp = Experiment.for_config(cfg)
    ctx = StageContext(stage="who", cfg=cfg, exp=exp)
    model, tok = load_model_and_tokenizer(cfg, device=None, for_training=True)
    counts = trainable_layers(model, cfg) if cfg.finetuning_type == "layers" else None
    if counts is None:
        model = apply_finetuning(model, cfg)
    n = count_parameters(model)
    log.info("who stage: %s of %s parameters trainable (%s)", f"{n['trainable']:,}", f"{n['total']:,}", cfg.finetuning_type)
    examples, cal = load_pools(cfg, tok)
    dec = WhoDecision(layer=cfg.who_layer, yes_id=token_id(tok, YES), no_id=token_id(tok, NO), max_tokens=cfg.max_tokens)
    init_score(model, tok, [p for p, _ in examples[:32]], dec)
    atomic_write_json(exp.root / "data_summary.json", {"train_pools": len(examples), "calibration_pools": len(cal),
                                                       "with_text": sum(1 for _, t in examples if t)})
    args = trl_args(cfg, exp, TrainingArguments)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    trainer = make_trainer_class()(model=model, args=args, train_dataset=examples,
                                   data_collator=Collator(pad, cfg.max_tokens), callbacks=[metrics_callback(exp)],
                                   who_cfg=cfg, decision=dec)

    def write_decision(folder):
        calibrate(trainer.model, tok, cal, dec, cfg)
        dec.save(folder)
        log.info("who decision: rules %s, thresholds %s, at_least_one %s, universe %s, calibration %s", dec.rules,
                 dec.thresholds, dec.at_least_one, dec.universe, dec.calibration)

    return train_and_finish(ctx, trainer, tok, extra_files=write_decision)


def cli_train(argv: list[str]) -> int:
    """`simtune train social who [--config FILE] [--key value ...]`"""
    from simtune.stages import train_command
    return train_command(WhoTrainConfig, train, argv, "usage: simtune train social who [--config FILE] [--key value ...]")
