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

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from simtune.config import ConfigError, GRPOConfig, opt
from simtune.io import DataError, atomic_path, atomic_write_json
from simtune.recipes.social.rewards import COMBINED_WEIGHTS, combined
from simtune.recipes.social.prompt import build_prompt, parse_answer, parse_prompt
from simtune.recipes.social.scoring import score_answer
from simtune.stages.common import TrainResult, complete_checkpoints

log = logging.getLogger(__name__)
TRAIN_COMMAND = "train social tree-grpo"  # the command named in the marker of its checkpoints and final model
STATE_FILE = "state.json"  # written last into a checkpoint: its presence marks the checkpoint complete


# --------------------------------------------------------------------------- config

@dataclass
class TreeGRPOConfig(GRPOConfig):
    """Tree-shaped GRPO on social samples: the model's own predictions become the parents
    of the next level (simtune's own loop)."""

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
        if self.beta > 0:
            raise ConfigError(f"{self.source_of('beta')}: 'beta' > 0 (a KL term) is not supported by tree_grpo; set beta: 0")
        if self.use_vllm:
            raise ConfigError(f"{self.source_of('use_vllm')}: 'use_vllm' is not supported by tree_grpo; set use_vllm: false")
        if self.eval_strategy != "no" or self.early_stopping_patience is not None:
            raise ConfigError(f"{self.source_of('eval_strategy')}: 'eval_strategy' / 'early_stopping_patience': tree_grpo "
                              "does not evaluate during training; set eval_strategy: no")
        if self.reward_funcs:
            raise ConfigError(f"{self.source_of('reward_funcs')}: 'reward_funcs' is not used by tree_grpo "
                              "(the node reward is set by reward_weights_social)")


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
    answers are decoded under :class:`~simtune.recipes.social.constrained.AnswerConstraint`
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

                    from simtune.recipes.social.constrained import AnswerConstraint
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


# --------------------------------------------------------------------------- policy update

def _completion_logps(model, batch: list[tuple[list[int], list[int]]], pad_id: int):
    """Per-token log-probs of each completion given its prompt: a list of 1-D tensors.

    Sequences are left-padded (position ids from the mask, as in generation) so every
    completion ends at the last column; only the last ``max completion + 1`` positions
    go through the LM head (``logits_to_keep``), not the whole prompt x vocabulary."""
    import torch

    device = next(model.parameters()).device
    width = max(len(p) + len(c) for p, c in batch)
    keep = max(len(c) for _, c in batch) + 1
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (p, c) in enumerate(batch):
        seq = p + c
        ids[i, width - len(seq):] = torch.tensor(seq)
        mask[i, width - len(seq):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                   logits_to_keep=keep, use_cache=False).logits            # [B, keep, V]: positions width-keep .. width-1
    out = []
    for i, (_, c) in enumerate(batch):
        # token t at column j is predicted at column j-1; completion columns: width-len(c) .. width-1
        lg = logits[i, keep - 1 - len(c):keep - 1].float()
        tgt = ids[i, width - len(c):].to(device)
        out.append(lg.gather(-1, tgt[:, None])[:, 0] - torch.logsumexp(lg, dim=-1))
    return out


def policy_loss(logp, old_logp, advantage: float, epsilon: float):
    """Clipped surrogate of one completion (``simtune.losses`` policy loss): ``(mean over its
    tokens of -min(r A, clip(r, 1-eps, 1+eps) A), share of its tokens whose clip was
    active)``, with ``r = exp(logp - old_logp)``."""
    import torch

    from simtune.losses import create_loss
    a = torch.as_tensor([advantage], dtype=logp.dtype, device=logp.device)
    loss, frac = create_loss("policy", epsilon=epsilon)(logp[None], old_logp[None], a)
    return loss, float(frac)


def policy_update(model, optimizer, examples: list[tuple[list[int], list[int], float]], *, epsilon: float,
                  num_iterations: int, micro_batch: int, max_grad_norm: float, pad_id: int,
                  loss_type: str = "token_mean") -> dict:
    """``num_iterations`` optimizer steps over the same examples (prompt ids, completion
    ids, advantage). Call :func:`disable_dropout` first, so that old and new log-probs
    are the same function of the weights (the model runs in train mode: gradient
    checkpointing stays on)."""
    import torch

    examples = [e for e in examples if e[1]]
    if not examples:
        return {"loss": 0.0, "clip_frac": 0.0, "grad_norm": 0.0, "train_tokens": 0}
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + len(examples[i][1]), reverse=True)
    batches = [order[s:s + micro_batch] for s in range(0, len(order), micro_batch)]
    n_tok = sum(len(e[1]) for e in examples)
    was_training = model.training
    model.train()
    old: dict[int, torch.Tensor] = {}
    if num_iterations > 1:  # with one pass, old = current weights: the detached new log-probs
        with torch.no_grad():
            for b in batches:
                for i, lp in zip(b, _completion_logps(model, [examples[i][:2] for i in b], pad_id)):
                    old[i] = lp.detach()
    params = [p for p in model.parameters() if p.requires_grad]
    tot_loss = tot_clip = gn = 0.0
    try:
        for it in range(num_iterations):
            optimizer.zero_grad(set_to_none=True)
            loss_sum = clip_sum = 0.0
            for b in batches:
                lps = _completion_logps(model, [examples[i][:2] for i in b], pad_id)
                parts = []
                for i, lp in zip(b, lps):
                    o = old.get(i, lp.detach())
                    mean_tok, frac = policy_loss(lp, o, examples[i][2], epsilon)
                    parts.append(mean_tok * len(lp) / n_tok if loss_type == "token_mean" else mean_tok / len(examples))
                    clip_sum += frac * len(lp)
                loss = torch.stack(parts).sum()
                loss.backward()
                loss_sum += float(loss.detach())
            gn = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf")))
            optimizer.step()
            tot_loss += loss_sum
            tot_clip += clip_sum / n_tok
    finally:
        model.train(was_training)
    return {"loss": tot_loss / num_iterations, "clip_frac": tot_clip / num_iterations, "grad_norm": gn, "train_tokens": n_tok}


def disable_dropout(model) -> int:
    """Set every dropout probability to 0 (as TRL's ``disable_dropout``); returns how many."""
    import torch

    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) and m.p:
            m.p = 0.0
            n += 1
    cfg = getattr(model, "config", None)
    for k in ("attention_dropout", "hidden_dropout", "dropout"):
        if cfg is not None and isinstance(getattr(cfg, k, None), float) and getattr(cfg, k):
            setattr(cfg, k, 0.0)
            n += 1
    return n


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

def _rng_state() -> dict:
    import numpy as np
    import torch

    # plain types and tensors only, so that it loads with torch.load(weights_only=True)
    pv, pstate, pgauss = random.getstate()
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    s = {"python": [pv, list(pstate), pgauss], "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                         int(has_gauss), float(gauss)],
         "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _set_rng_state(s: dict) -> None:
    import numpy as np
    import torch

    pv, pstate, pgauss = s["python"]
    random.setstate((pv, tuple(pstate), pgauss))
    name, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(exp, step: int, model, optimizer, scheduler, keep: int | None) -> Path:
    """checkpoints/checkpoint-N/: trainable weights, optimizer, scheduler, RNG; state.json last."""
    import torch

    dest = exp.checkpoints_dir / f"checkpoint-{step}"
    with atomic_path(dest, is_dir=True, command=TRAIN_COMMAND) as tmp:
        from safetensors.torch import save_file
        save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step}))
    if keep:
        for _, p in complete_checkpoints(exp, STATE_FILE)[:-keep]:
            import shutil
            shutil.rmtree(p, ignore_errors=True)
    return dest


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    import torch

    from safetensors.torch import load_file
    state = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise ConfigError(f"resume: checkpoint {path} holds parameters this model lacks (e.g. {missing[0]}); "
                          "was finetuning_type or the model changed?")
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v.to(params[n].device, params[n].dtype))
    o = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(o["optimizer"])
    scheduler.load_state_dict(o["scheduler"])
    _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return int(json.loads((path / STATE_FILE).read_text())["step"])


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
        ck = complete_checkpoints(exp, STATE_FILE)
        if ck:
            step = load_checkpoint(ck[-1][1], model, optimizer, scheduler)
            truncate_metrics(exp, step)
            log.info("resumed from %s (step %d)", ck[-1][1], step)
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
            save_checkpoint(exp, step, model, optimizer, scheduler, cfg.save_total_limit)
    with atomic_path(exp.final_model_dir, is_dir=True, command=TRAIN_COMMAND) as tmp:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    atomic_write_json(exp.root / "train_result.json", {"global_step": step, **last})
    return TrainResult(exp, exp.final_model_dir, step, last)


def cli_train(argv: list[str]) -> int:
    """`simtune train social tree-grpo [--config FILE] [--key value ...]`"""
    cfg = TreeGRPOConfig.from_argv(argv)
    if cfg is None:
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    r = train(cfg)
    print(f"done: {r.global_step} steps; experiment {r.experiment.root}; model {r.final_model_dir}")
    return 0
