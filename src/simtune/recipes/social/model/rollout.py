"""Tree-shaped (breadth-first) GRPO for the social recipe: simtune's own loop (TRL has no
tree rollouts).

For each root post, ``num_traj_per_root`` trajectories are sampled. Level 0 answers the
root's prompt; every predicted user who matches a real reacting user (same id) and whose
real node has its own depth-(d+1) sample becomes a parent at level d+1, with a prompt
built by :func:`~simtune.recipes.social.samples.build_prompt` from the real node's
candidate pool and the *predicted* thread (the model's own ancestors). Unmatched
predictions, and matched users whose real node has no sample (no real children, or
deeper than the samples were made for), get no children. Levels stop at ``depth_limit``.

Rewards: each generated node earns ``combined(score_answer(...))`` against the real
children of the real node it stands for; a trajectory's return is the **sum** of its node
rewards; advantages are ``(R_k - mean) / (std + 1e-4)`` over the root's trajectories
(population std), and every node of trajectory k is trained with ``A_k``.

Batching: level 0 of all roots of an update goes into one generate call (each prompt
run through the model once, its ``num_traj_per_root`` samples sharing that prefill: see
:func:`simtune.generation.generate_ids`); each deeper level gathers
the prompts of all trajectories of all roots of the update (siblings and cousins
together). :func:`naive_rollout` does the same one trajectory at a time, one prompt per
generate call (the baseline); both share :func:`_expand` (matching and child prompts)
and :func:`_score` (rewards).

The update is a clipped policy-gradient objective (PPO/GRPO style) without a KL term;
see docs/tree_grpo.md.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from simtune.config import ConfigError, opt
from simtune.stage_configs import PolicySamplingConfig
from simtune.io import DataError, atomic_path, atomic_write_json
from simtune.recipes.social.rewards import COMBINED_WEIGHTS, combined
from simtune.recipes.social.prompt import build_prompt, parse_answer, parse_prompt
from simtune.recipes.social.scoring import score_answer
from simtune.recipes.social.model.tree_checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from simtune.recipes.social.model.tree_policy import disable_dropout, policy_update
from simtune.stages.common import TrainResult

log = logging.getLogger(__name__)
TRAIN_COMMAND = "train social tree-grpo"  # the command named in the marker of its checkpoints and final model


# --------------------------------------------------------------------------- config

@dataclass
class TreeGRPOConfig(PolicySamplingConfig):
    """Tree-shaped GRPO on social samples: the model's own predictions become the parents
    of the next level (simtune's own loop). No KL term, no vLLM, no reward functions: those
    GRPO keys are unknown here, so setting one is an error."""

    train_file: Optional[str] = opt(None, "unused by tree_grpo: the data comes from samples_dir")
    samples_dir: Optional[str] = opt(None, "output folder of `data social samples` (train.parquet)", required=True)
    split: str = opt("train", "which split's Parquet file to roll out on")
    num_traj_per_root: int = opt(4, "trajectories (the group) per root post; 1 gives zero advantages", min=1)
    depth_limit: int = opt(1, "deepest level generated (0 = the root's reactions only)", min=0)
    roots_per_update: int = opt(2, "root posts per update step", min=1)
    generation_batch_size: int = opt(16, "prompts per generate call (each expands to its samples)", min=1)
    constrained: bool = opt(True, "sample answers under the answer grammar (always valid JSON naming pool "
                                  "candidates only; the loss uses the model's unmasked probabilities)")
    reward_weights_social: dict = opt(dict(COMBINED_WEIGHTS), "node reward = weighted sum of format, who (F1), action, text")
    loss_type: str = opt("token_mean", "token_mean: mean over all completion tokens of the update; "
                         "sequence_mean: mean over tokens per node, then over nodes",
                         choices=["token_mean", "sequence_mean"])
    report_to: list[str] = opt(["none"], "only metrics.jsonl is written by tree_grpo", choices=["none"])
    recipe: str = opt("social", "recipe name: outputs/<recipe>/<run_name>_<timestamp>/")
    run_name: str = opt("tree_grpo", "experiment name")

    def validate(self) -> None:
        super().validate()
        w = self.reward_weights_social
        if set(w) != set(COMBINED_WEIGHTS) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w.values()):
            raise ConfigError(f"{self.source_of('reward_weights_social')}: 'reward_weights_social' needs numbers for exactly "
                              f"{sorted(COMBINED_WEIGHTS)}, got {w!r}")
        if self.eval_strategy != "no" or self.early_stopping_patience is not None:
            raise ConfigError(f"{self.source_of('eval_strategy')}: 'eval_strategy' / 'early_stopping_patience': tree_grpo "
                              "does not evaluate during training; set eval_strategy: no")


# --------------------------------------------------------------------------- index

@dataclass
class NodeSample:
    """One real node with its sample: where its prompt comes from and its truth."""
    key: tuple[str, str]                 # (root_id, node_id)
    depth: int
    prompt: str                          # the real sample's prompt (real chain)
    true_users: list[str]
    true_actions: list[str]
    true_texts: list[str]
    children: list[dict]                 # real direct children: {id, user, action, text}
    _parsed: dict | None = None

    def parsed(self) -> dict:
        if self._parsed is None:
            self._parsed = parse_prompt(self.prompt, f"sample {self.key[0]}:{self.key[1]}")
        return self._parsed


class SampleIndex:
    """Roots (depth-0 samples) and every node sample by (root_id, node_id)."""

    def __init__(self, nodes: dict[tuple[str, str], NodeSample], roots: list[tuple[str, str]]):
        self.nodes = nodes
        self.roots = roots

    @classmethod
    def load(cls, samples_dir: str | Path, split: str = "train") -> "SampleIndex":
        import orjson
        import pyarrow.parquet as pq

        path = Path(samples_dir) / f"{split}.parquet"
        if not path.is_file():
            raise DataError(path, None, None, "missing: run `simtune data social samples` first (or check split)")
        cols = ["root_id", "node_id", "depth", "prompt", "true_users", "true_actions", "true_texts", "children"]
        t = pq.read_table(path)
        missing = [c for c in cols if c not in t.column_names]
        if missing:
            raise DataError(path, None, missing[0], "missing column")
        data = {c: t.column(c).to_pylist() for c in cols}
        nodes, roots = {}, []
        for row in range(t.num_rows):
            r = {c: data[c][row] for c in cols}
            try:
                kids = orjson.loads(r["children"]) if r["children"] else []
            except orjson.JSONDecodeError as e:
                raise DataError(path, row + 1, "children", f"not JSON: {e}") from None
            key = (r["root_id"], r["node_id"])
            nodes[key] = NodeSample(key, int(r["depth"]), r["prompt"], list(r["true_users"]), list(r["true_actions"]),
                                    list(r["true_texts"]),
                                    [{k: c.get(k) for k in ("id", "user", "action", "text")} for c in kids])
            if r["depth"] == 0:
                roots.append(key)
        if not roots:
            raise DataError(path, None, "depth", "no depth-0 (root) samples")
        return cls(nodes, roots)


# --------------------------------------------------------------------------- generation

@dataclass
class Completion:
    text: str
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)


# generator(prompts, n) -> for each prompt, n Completions (or None: prompt too long, not generated)
Generator = Callable[[Sequence[str], int], list]


def hf_generator(model, tok, *, max_new_tokens: int, batch_size: int, do_sample: bool, temperature: float = 1.0,
                 top_p: float = 1.0, max_prompt_tokens: int | None = None, stats: dict | None = None,
                 constrained: bool = False) -> Generator:
    """Batched, left-padded generation returning token ids (like simtune.generation.generate,
    which returns text only). Prompts are sorted by length; each is tokenized once and its
    ``n`` samples share one prefill (:func:`simtune.generation.generate_ids`). ``constrained``:
    answers are decoded under :class:`~simtune.recipes.social.model.constrained.AnswerConstraint`
    (every answer parses and names pool candidates only; the policy loss still uses the
    model's unmasked probabilities, as with guided decoding in vLLM)."""
    import torch

    from simtune.generation import generate_ids, left_pad, render_prompt

    eos = set()
    ge = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for e in (ge if isinstance(ge, (list, tuple)) else [ge]) + [tok.eos_token_id]:
        if e is not None:
            eos.add(int(e))
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def gen(prompts: Sequence[str], n: int) -> list:
        enc = [tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"] for p in prompts]
        results: list = [None] * len(prompts)
        ok = [i for i in range(len(enc)) if max_prompt_tokens is None or len(enc[i]) <= max_prompt_tokens]
        if stats is not None:
            stats["prompts_too_long"] = stats.get("prompts_too_long", 0) + len(enc) - len(ok)
        order = sorted(ok, key=lambda i: len(enc[i]), reverse=True)
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        try:
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                ids, mask = left_pad([enc[i] for i in idx], pad_id)
                width = ids.shape[1]
                m = n if do_sample else 1        # greedy: one sequence, copied n times
                kw = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_id, do_sample=do_sample)
                if do_sample:
                    kw.update(temperature=temperature, top_p=top_p, top_k=None)
                else:
                    kw.update(temperature=None, top_p=None, top_k=None)
                if constrained:
                    from transformers import LogitsProcessorList

                    from simtune.recipes.social.model.constrained import AnswerConstraint
                    parsed = [parse_prompt(prompts[i]) for i in idx]
                    kw["logits_processor"] = LogitsProcessorList([AnswerConstraint(
                        tok, [[c for c, _ in parsed[r // m]["candidates"]] for r in range(len(idx) * m)], width,
                        ordered=[parsed[r // m]["order"] == "pool" for r in range(len(idx) * m)],
                        max_new_tokens=max_new_tokens, eos_ids=sorted(eos))])
                with torch.no_grad():     # the group's m samples share one prefill of the prompt
                    out = generate_ids(model, ids.to(device), mask.to(device), m, **kw)
                new = out[:, width:].tolist()
                for row, i in enumerate(idx):
                    group = []
                    for seq in new[row * m:(row + 1) * m] * (n // m):
                        cut = len(seq)
                        for j, t in enumerate(seq):
                            if t in eos:
                                cut = j + 1
                                break
                        c = seq[:cut]
                        group.append(Completion(tok.decode(c, skip_special_tokens=True), list(enc[i]), c))
                    results[i] = group
        finally:
            model.train(was_training)
        return results

    return gen


# --------------------------------------------------------------------------- rollouts

@dataclass
class RolloutNode:
    traj: int
    depth: int
    key: tuple[str, str]            # the real node this prompt stands for
    chain: list[dict]               # predicted ancestors (user, action, text)
    prompt: str
    parent: int | None = None       # index of the parent node in the trajectory
    completion: Completion | None = None
    pred: list | None = None
    score: dict | None = None
    reward: float = 0.0


@dataclass
class Trajectory:
    root: tuple[str, str]
    k: int
    nodes: list[RolloutNode] = field(default_factory=list)
    ret: float = 0.0
    advantage: float = 0.0

    def summary(self) -> dict:
        return {"root_id": self.root[0], "traj": self.k, "return": self.ret, "advantage": self.advantage,
                "nodes": [{"depth": n.depth, "node_id": n.key[1], "parent": n.parent,
                           "chain": [c["user"] for c in n.chain], "completion": n.completion.text if n.completion else None,
                           "reward": n.reward, "f1": n.score["f1"] if n.score else None} for n in self.nodes]}


def _root_prompt(index: SampleIndex, key: tuple[str, str]) -> str:
    s = index.nodes[key]
    p = s.parsed()
    return build_prompt(p["post_text"], p["post_author"], p["candidates"], [], order=p["order"])


def _score(node: RolloutNode, index: SampleIndex, weights: dict) -> None:
    """Parse, score against the real node's children, and set the node reward."""
    s = index.nodes[node.key]
    node.pred = parse_answer(node.completion.text)
    node.score = score_answer(node.pred, s.true_users, s.true_actions, s.true_texts)
    node.reward = combined(node.score, weights)


def _expand(node: RolloutNode, node_index: int, index: SampleIndex, depth_limit: int) -> list[RolloutNode]:
    """Children of a scored node: one per predicted user (first mention wins) that matches
    a real child with its own sample, within ``depth_limit``."""
    if node.pred is None or node.depth + 1 > depth_limit:
        return []
    real = index.nodes[node.key]
    out, seen = [], set()
    for e in node.pred:
        u = e["user"]
        if u in seen:
            continue
        seen.add(u)
        hits = [c for c in real.children if c["user"] == u and (node.key[0], c["id"]) in index.nodes]
        if not hits:
            continue
        key = (node.key[0], hits[0]["id"])
        p = index.nodes[key].parsed()
        chain = node.chain + [{"user": u, "action": e["action"], "text": e.get("text", "")}]
        out.append(RolloutNode(node.traj, node.depth + 1, key, chain,
                               build_prompt(p["post_text"], p["post_author"], p["candidates"], chain, order=p["order"]),
                               parent=node_index))
    return out


def _finish(trajs: list[Trajectory], n_per_root: int) -> None:
    """Returns (sum of node rewards) and per-root normalized advantages."""
    for t in trajs:
        t.ret = sum(n.reward for n in t.nodes)
    by_root: dict = {}
    for t in trajs:
        by_root.setdefault(t.root, []).append(t)
    for group in by_root.values():
        r = [t.ret for t in group]
        mean = sum(r) / len(r)
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / len(r))
        for t in group:
            t.advantage = (t.ret - mean) / (std + 1e-4)


def tree_rollout(index: SampleIndex, roots: Sequence[tuple[str, str]], generate: Generator, *, num_traj: int,
                 depth_limit: int, weights: dict | None = None) -> list[Trajectory]:
    """Breadth-first rollouts of ``num_traj`` trajectories for each root, every level of
    every trajectory of every root generated together."""
    weights = weights or COMBINED_WEIGHTS
    trajs = [Trajectory(r, k) for r in roots for k in range(num_traj)]
    prompts = [_root_prompt(index, r) for r in roots]
    outs = generate(prompts, num_traj)
    frontier: list[tuple[Trajectory, RolloutNode, int]] = []
    for ri, r in enumerate(roots):
        group = outs[ri]
        if group is None:       # prompt too long: the root is not rolled out
            continue
        for k in range(num_traj):
            t = trajs[ri * num_traj + k]
            node = RolloutNode(k, 0, r, [], prompts[ri], completion=group[k])
            _score(node, index, weights)
            t.nodes.append(node)
            frontier.append((t, node, 0))
    while frontier:
        nxt = []
        for t, node, i in frontier:
            for c in _expand(node, i, index, depth_limit):
                nxt.append((t, c))
        if not nxt:
            break
        outs = generate([c.prompt for _, c in nxt], 1)
        frontier = []
        for (t, c), o in zip(nxt, outs):
            if o is None:
                continue
            c.completion = o[0]
            _score(c, index, weights)
            t.nodes.append(c)
            frontier.append((t, c, len(t.nodes) - 1))
    _finish(trajs, num_traj)
    return trajs


def naive_rollout(index: SampleIndex, roots: Sequence[tuple[str, str]], generate: Generator, *, num_traj: int,
                  depth_limit: int, weights: dict | None = None) -> list[Trajectory]:
    """The baseline: one trajectory at a time, one prompt per generate call, breadth-first
    within the trajectory. Same trees as :func:`tree_rollout` under greedy decoding."""
    weights = weights or COMBINED_WEIGHTS
    trajs = []
    for r in roots:
        prompt = _root_prompt(index, r)
        for k in range(num_traj):
            t = Trajectory(r, k)
            trajs.append(t)
            queue = [RolloutNode(k, 0, r, [], prompt)]
            while queue:
                node = queue.pop(0)
                o = generate([node.prompt], 1)[0]
                if o is None:
                    continue
                node.completion = o[0]
                _score(node, index, weights)
                t.nodes.append(node)
                queue.extend(_expand(node, len(t.nodes) - 1, index, depth_limit))
    _finish(trajs, num_traj)
    return trajs


# --------------------------------------------------------------------------- metrics

def rollout_metrics(trajs: list[Trajectory], depth_limit: int) -> dict:
    import statistics as st

    m: dict = {}
    rets = [t.ret for t in trajs]
    m["return_mean"] = sum(rets) / len(rets) if rets else 0.0
    m["return_std"] = st.pstdev(rets) if len(rets) > 1 else 0.0
    nodes = [n for t in trajs for n in t.nodes]
    for d in range(depth_limit + 1):
        nd = [n for n in nodes if n.depth == d]
        r = [n.reward for n in nd]
        m[f"nodes_d{d}"] = len(nd)
        m[f"reward_mean_d{d}"] = sum(r) / len(r) if r else None
        m[f"reward_std_d{d}"] = st.pstdev(r) if len(r) > 1 else (0.0 if r else None)
        m[f"f1_d{d}"] = sum(n.score["f1"] for n in nd) / len(nd) if nd else None
        m[f"valid_d{d}"] = sum(n.score["valid"] for n in nd) / len(nd) if nd else None
    m["nodes"] = len(nodes)
    m["tokens_generated"] = sum(len(n.completion.completion_ids) for n in nodes)
    return m


# --------------------------------------------------------------------------- training loop

def roots_for_step(roots: list, step: int, per_update: int, seed: int) -> list:
    """Roots of update ``step`` (1-based): epochs of seeded permutations, read in order."""
    n = len(roots)
    out = []
    for j in range((step - 1) * per_update, step * per_update):
        epoch, pos = divmod(j, n)
        perm = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        out.append(roots[perm[pos]])
    return out


def train(cfg: TreeGRPOConfig, *, generator: Generator | None = None, model=None, tok=None) -> TrainResult:
    """Tree GRPO training. ``generator`` replaces sampling from the model (tests);
    ``model``/``tok`` skip loading (already fine-tuning-wrapped)."""
    import torch

    from simtune.experiment import Experiment
    from simtune.models import pick_device
    from transformers import get_scheduler

    from simtune.stages.common import load_for_training, truncate_metrics

    index = SampleIndex.load(cfg.samples_dir, cfg.split)     # data errors before any folder is made
    deepest = max(n.depth for n in index.nodes.values())
    if cfg.depth_limit > deepest:
        log.warning("depth_limit=%d but %s holds samples down to depth %d only: levels below %d are never generated "
                    "(make samples with a larger --max_depth)", cfg.depth_limit, cfg.samples_dir, deepest, deepest)
    if cfg.use_liger_kernel:
        log.warning("use_liger_kernel ignored: tree_grpo runs its own loop, not a transformers Trainer")
    if cfg.num_traj_per_root == 1:
        log.warning("num_traj_per_root=1: every advantage is 0, so the weights do not change (use >= 2 to train)")
    exp = Experiment.for_config(cfg)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if model is None:
        model, tok = load_for_training(cfg)
        if cfg.finetuning_type != "qlora":
            model.to(pick_device(cfg.device))
    disable_dropout(model)
    if cfg.gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{cfg.source_of('finetuning_type')}: no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total = cfg.max_steps if cfg.max_steps > 0 else max(1, math.ceil(cfg.num_train_epochs * len(index.roots) / cfg.roots_per_update))
    warmup = int(cfg.warmup_ratio * total)
    kind = cfg.lr_scheduler_type if cfg.lr_scheduler_type != "constant" or not warmup else "constant_with_warmup"
    scheduler = get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gen_stats: dict = {}
    if generator is None:
        generator = hf_generator(model, tok, max_new_tokens=cfg.max_completion_length, batch_size=cfg.generation_batch_size,
                                 do_sample=cfg.temperature > 0, temperature=max(cfg.temperature, 1e-5), top_p=cfg.top_p,
                                 max_prompt_tokens=cfg.max_length - cfg.max_completion_length, stats=gen_stats,
                                 constrained=cfg.constrained)
    step = 0
    if cfg.resume:
        ck = latest_checkpoint(exp)
        if ck:
            step = load_checkpoint(ck, model, optimizer, scheduler)
            truncate_metrics(exp, step)
            log.info("resumed from %s (step %d)", ck, step)
        else:
            log.warning("resume: no complete checkpoint in %s; starting from step 0", exp.checkpoints_dir)
    last: dict = {}
    while step < total:
        step += 1
        roots = roots_for_step(index.roots, step, cfg.roots_per_update, cfg.seed)
        t0 = time.time()
        gen_stats["prompts_too_long"] = 0
        trajs = tree_rollout(index, roots, generator, num_traj=cfg.num_traj_per_root, depth_limit=cfg.depth_limit,
                             weights=cfg.reward_weights_social)
        t1 = time.time()
        examples = [(n.completion.prompt_ids, n.completion.completion_ids, t.advantage) for t in trajs for n in t.nodes]
        upd = policy_update(model, optimizer, examples, epsilon=cfg.epsilon, num_iterations=cfg.num_iterations,
                            micro_batch=cfg.per_device_train_batch_size, max_grad_norm=cfg.max_grad_norm,
                            pad_id=pad_id, loss_type=cfg.loss_type)
        scheduler.step()
        t2 = time.time()
        last = {**rollout_metrics(trajs, cfg.depth_limit), **upd, "learning_rate": scheduler.get_last_lr()[0],
                "prompts_too_long": gen_stats.get("prompts_too_long", 0), "roots": len(roots),
                "gen_seconds": round(t1 - t0, 4), "update_seconds": round(t2 - t1, 4)}
        if step % cfg.logging_steps == 0 or step == total:
            exp.log_metrics(last, step=step)
        if step % cfg.log_completions_every == 0 or step == total:
            exp.write_samples(f"trajectories_step{step:06d}.jsonl", [t.summary() for t in trajs])
        if step % cfg.save_steps == 0 or step == total:
            save_checkpoint(exp, step, model, optimizer, scheduler, cfg.save_total_limit, TRAIN_COMMAND)
    with atomic_path(exp.final_model_dir, is_dir=True, command=TRAIN_COMMAND) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    atomic_write_json(exp.root / "train_result.json", {"global_step": step, **last})
    return TrainResult(exp, exp.final_model_dir, step, last)


def cli_train(argv: list[str]) -> int:
    """`simtune train social tree-grpo [--config FILE] [--key value ...]`"""
    from simtune.stages import train_command
    return train_command(TreeGRPOConfig, train, argv, "usage: simtune train social tree-grpo [--config FILE] [--key value ...]")
