"""`simtune simulate`: a whole cascade for a new post, breadth first.

Level 0 asks the model which pool users react to the post; every predicted reaction
becomes a parent at the next level, where the model is asked who reacts to it (the thread
so far in the prompt), down to ``depth_limit``. Prompts come from ``prompt.build_prompt``,
with the candidate lines the samples have: the static profile and, with ``--build_dir``,
the user's acts before the post (``prompt.candidate_line``), so a model is asked what it
was trained on. How users are chosen (``--who``):
- ``scorer`` (a model trained by `simtune train social who`): every candidate of the pool
  scored, the saved decision, then the chosen users' reactions (``who.py``); a pool of any
  size is one question (scored in chunks of tokens, which give the same scores);
- ``generative``: the model writes the whole answer; pools larger than ``pool_chunk`` are
  asked in chunks (one prompt each) and the answers united.
All questions of a level are answered together in batches. With ``--against`` the simulated
tree's size, depth and breadth per level are printed beside a real cascade's.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

from simtune.config import BaseConfig, ConfigError, opt
from simtune.io import DataError, atomic_write_json
from simtune.recipes.social.prompt import build_prompt, candidate_line, parse_answer, static_line


@dataclass
class SimulateConfig(BaseConfig):
    model: str = opt("default", "model (folder, .gguf, 'default')")
    post: Optional[str] = opt(None, "JSON file: {text, user[, time]}, or one trees.jsonl record (its root is the post)", required=True)
    pool: Optional[str] = opt(None, "JSON file: {user_id: profile} or [{id, profile}]; profile = text or {interests, "
                                    "description, ...}; default with --build_dir: every user active before the post")
    build_dir: Optional[str] = opt(None, "a build folder: candidate lines as the samples have them (profile and acts "
                                         "before the post's time)")
    history: bool = opt(True, "with --build_dir: put the users' acts before the post in their lines (as samples "
                              "made without --no_history have them)")
    against: Optional[str] = opt(None, "a real cascade to compare with: a trees.jsonl record (JSON file); default: --post when it is one")
    who: str = opt("auto", "scorer | generative | auto (scorer when the model has who.json)",
                   choices=["auto", "scorer", "generative"])
    depth_limit: int = opt(2, "levels below the post to simulate (1 = direct reactions only)", min=1)
    decision: str = opt("auto", "scorer: who is named out of the pool. universe: as many as the scores recalibrated "
                                "for everyone add up to (who.json's universe calibration); pool: the rules tuned on "
                                "training-like pools (half reactors); auto: universe without --pool, else pool",
                        choices=["auto", "universe", "pool"])
    who_draw: str = opt("top", "decision universe: top = the k best of a level (k = its expected size); sample = k "
                               "drawn in proportion to their probabilities (seeded by --seed)", choices=["top", "sample"])
    candidates: Optional[int] = opt(None, "decision universe: ask the scorer about the users a no-model rule ranks "
                                          "first (candidates.py), this many per parent; default: as many as who.json "
                                          "was calibrated with; 0: everyone", min=0)
    pool_chunk: int = opt(20, "generative: candidates per prompt", min=1)
    max_children: int = opt(20, "at most this many reactions per parent (the scorer keeps the best scored)", min=1)
    max_nodes: int = opt(200, "stop expanding once the tree has this many nodes", min=1)
    do_sample: bool = opt(False, "sample instead of greedy decoding")
    temperature: float = opt(0.7, "sampling temperature", min=0.0)
    top_p: float = opt(0.95, "nucleus sampling", min=0.0, max=1.0)
    max_new_tokens: int = opt(256, "generative: tokens per answer", min=1)
    reaction_tokens: int = opt(64, "scorer: tokens per chosen user's action and text", min=8)
    batch_size: int = opt(8, "generation batch size", min=1)
    answer_order: str = opt("pool", "the answer order the model was trained with (`data social samples --answer_order`)",
                            choices=["pool", "time"])
    constrained: bool = opt(True, "constrained decoding: answers always parse and name pool candidates only")
    seed: int = opt(0, "random seed")
    out: str = opt("outputs/social/simulated.json", "where to write the simulated tree (JSON)")

    def validate(self) -> None:
        super().validate()
        if not self.pool and not self.build_dir:
            raise ConfigError(f"{self.source_of('pool')}: give --pool, or --build_dir to take every user active "
                              "before the post")


# --------------------------------------------------------------------------- inputs

def load_pool(path: str | os.PathLike) -> dict[str, str | None]:
    """``{user_id: static profile line or None}`` from a pool file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, getattr(e, "lineno", None), None, f"cannot read the pool: {e}") from None
    if isinstance(data, dict):
        return {str(k): static_line(v) for k, v in data.items()}
    if isinstance(data, list):
        pool = {}
        for i, rec in enumerate(data, 1):
            if not isinstance(rec, dict) or "id" not in rec:
                raise DataError(path, i, "id", "each pool entry needs an 'id'")
            pool[str(rec["id"])] = static_line(rec.get("profile", rec))
        return pool
    raise DataError(path, None, None, "the pool must be a JSON object or list")


def load_post(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """-> (post {text, user, time}, the real tree if the file is a trees.jsonl record)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8").strip().splitlines()[0])
    except (OSError, json.JSONDecodeError, IndexError) as e:
        raise DataError(path, 1, None, f"cannot read the post: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and data["nodes"]:
        root = next((n for n in data["nodes"] if n.get("parent") is None), data["nodes"][0])
        return {"text": root.get("text", ""), "user": str(root.get("user", "")), "time": root.get("time")}, data
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise DataError(path, 1, "text", "the post needs a 'text' string")
    user = data.get("user", "")
    if isinstance(user, dict):
        user = user.get("id", "")
    return {"text": data["text"], "user": str(user), "time": data.get("time")}, None


class Lines:
    """Candidate lines as the samples write them: from a build's user table (static profile,
    acts before ``t``) where it knows the user, else from the pool file's profile."""

    def __init__(self, pool: dict[str, str | None] | None, build_dir: str | None, history: bool = True):
        self.pool = pool or {}
        self.history = history
        self.users = None
        if build_dir:
            from simtune.recipes.social.user_table import UserTable
            self.users = UserTable(build_dir)

    def universe(self, t: int | None) -> list[str]:
        """Every user of the build active strictly before ``t`` (all of them without a time)."""
        u = self.users
        n = u.eligible(int(t)) if t is not None else len(u.by_first)
        return [u.ids[i] for i in u.by_first[:n]]

    def __call__(self, users: list[str], t: int | None, present: Sequence[str] = ()) -> list[tuple[str, str]]:
        """``present``: the post's author, then the thread's users (for behaviour lines)."""
        out = []
        idx = [self.users.pos.get(x, -1) if self.users is not None else -1 for x in users]
        known = [i for i in idx if i >= 0]
        counts = dict(zip(known, self.users.acts_before(known, int(t)).tolist())) if known and t is not None else {}
        pres = self.users.present(list(present), int(t)) if present and known and t is not None else None
        for x, i in zip(users, idx):
            if i >= 0 and t is not None:
                out.append((x, self.users.profile_line(i, counts[i], int(t), self.history, pres)))
            elif i >= 0:
                out.append((x, candidate_line(self.users.static_line(i))))
            else:
                out.append((x, candidate_line(self.pool.get(x))))
        return out


def node_prompt(post: dict, chain: list[dict], lines: list[tuple[str, str]], order: str = "pool") -> str:
    """The question for one parent: the post, the thread down to it, the candidates' lines."""
    return build_prompt(post["text"], post["user"], lines, chain, order=order)


# --------------------------------------------------------------------------- answering a level

class Ask(NamedTuple):
    """One question of a level: who of ``candidates`` reacts to the node ``prompt`` shows."""
    prompt: str
    candidates: list[str]
    depth: int
    outside: int = 0     # users of the universe the proposer left out of ``candidates``


Answerer = Callable[[list[Ask]], list[list[dict]]]


def scorer_answerer(model, tok, dec, cfg: SimulateConfig, universe: bool = False, fixed: dict | None = None) -> Answerer:
    """An :class:`Ask` per question -> the chosen users' reactions (pool order).
    ``universe``: the pool is everyone, or the proposer's best of everyone
    (``decision.expected_size_pick`` over each level, with the users left out counted in).
    ``fixed``: no reactions written; train statistics (``baselines.stat_for``) give action and text."""
    import random

    from simtune.recipes.social.model.decision import expected_size_pick
    from simtune.recipes.social.model.who import encode_pool, pool_probs, reactions
    rng = random.Random(cfg.seed) if cfg.who_draw == "sample" else None

    def answer(asks):
        pools = [encode_pool(tok, a.prompt, a.candidates) for a in asks]
        probs = pool_probs(model, tok, pools, dec)
        if universe:
            probs = [dec.universe_probs(pr, a.depth) for pr, a in zip(probs, asks)]
            chosen = expected_size_pick(probs, rng, sum(dec.outside_rate(a.depth) * a.outside for a in asks))
        else:
            chosen = [dec.choose(pr, a.depth) for pr, a in zip(probs, asks)]
        picks = [sorted(sorted(pick, key=lambda i: -pr[i])[:cfg.max_children]) for pick, pr in zip(chosen, probs)]
        answer.capped += sum(len(c) > cfg.max_children for c in chosen)  # simulate() flags the tree truncated
        if fixed is not None:
            from simtune.recipes.social.baselines import _answer, stat_for
            return [_answer(stat_for(fixed, a.depth), [a.candidates[i] for i in pk]) for pk, a in zip(picks, asks)]
        outs = reactions(model, tok, pools, [a.candidates for a in asks], picks, max_new_tokens=cfg.reaction_tokens,
                         do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p)
        return [parse_answer(o) or [] for o in outs]

    answer.capped = 0
    return answer


def generative_answerer(model, tok, cfg: SimulateConfig) -> Answerer:
    from simtune.generation import generate

    def answer(asks):
        constraint = None
        if cfg.constrained:
            from simtune.recipes.social.model.constrained import answer_constraint_factory, eos_ids
            constraint = answer_constraint_factory(tok, [a.candidates for a in asks], [a.prompt for a in asks],
                                                   max_new_tokens=cfg.max_new_tokens, eos_ids=eos_ids(model))
        outs = generate(model, tok, [a.prompt for a in asks], max_new_tokens=cfg.max_new_tokens,
                        batch_size=cfg.batch_size, do_sample=cfg.do_sample, temperature=cfg.temperature,
                        top_p=cfg.top_p, constraint=constraint)
        return [[e for e in parse_answer(o) or [] if e["user"] in set(a.candidates)] for o, a in zip(outs, asks)]
    return answer


def simulate(answer: Answerer, post: dict, users: list[str], lines: Lines, cfg: SimulateConfig,
             chunk: int | None = None, candidates: int = 0) -> dict:
    """Breadth-first simulation; returns the tree {user, action, text, depth, children} (the root
    also ``truncated: true`` when ``max_children`` or ``max_nodes`` left named reactions out).
    ``chunk``: candidates per question (None: the whole pool in one). ``candidates`` > 0: each
    parent's question is asked about the proposer's best of ``users`` (``candidates.propose``)."""
    from simtune.recipes.social.candidates import Proposal, propose
    root = {"user": post["user"], "action": "post", "text": post["text"], "depth": 0, "children": []}
    level = [(root, [])]  # (node, chain of ancestors below the root)
    n_nodes = 1
    for depth in range(cfg.depth_limit):
        asks, parents = [], []
        for node, chain in level:
            present = [post["user"], *(c["user"] for c in chain)]
            others = [u for u in users if u != node["user"]]
            prop = (propose(lines.users, others, post.get("time"), present, candidates)
                    if candidates and lines.users is not None else Proposal(others, 0))
            cands = prop.users
            step = chunk or max(len(cands), 1)
            for s in range(0, len(cands), step):
                part = cands[s:s + step]
                asks.append(Ask(node_prompt(post, chain, lines(part, post.get("time"), present), cfg.answer_order),
                                part, depth, prop.outside if s == 0 else 0))
                parents.append((node, chain))
        if not asks:
            break
        nxt, capped = [], getattr(answer, "capped", 0)
        answers = answer(asks)
        if getattr(answer, "capped", 0) > capped:
            root["truncated"] = True  # the answerer named more than --max_children under a node
        for (node, chain), got in zip(parents, answers):
            for e in got:
                if any(c["user"] == e["user"] for c in node["children"]):
                    continue
                if len(node["children"]) >= cfg.max_children or n_nodes >= cfg.max_nodes:
                    root["truncated"] = True  # a named reaction was left out for --max_children / --max_nodes
                    continue
                child = {"user": e["user"], "action": e["action"], "text": e["text"], "depth": depth + 1, "children": []}
                node["children"].append(child)
                n_nodes += 1
                nxt.append((child, chain + [{"user": e["user"], "action": e["action"], "text": e["text"]}]))
        level = nxt
    return root


# --------------------------------------------------------------------------- trees and comparison

def tree_stats(root: dict) -> dict:
    """Size (nodes below the root), depth, breadth per level, and actions."""
    breadth: Counter = Counter()
    actions: Counter = Counter()
    stack = [(root, 0)]
    while stack:
        n, d = stack.pop()
        if d:
            breadth[d] += 1
            actions[n.get("action")] += 1
        stack.extend((c, d + 1) for c in n.get("children", []))
    return {"size": sum(breadth.values()), "depth": max(breadth) if breadth else 0,
            "breadth": [breadth[d] for d in range(1, (max(breadth) if breadth else 0) + 1)], "actions": dict(actions)}


def tree_from_record(rec: dict) -> dict:
    """A trees.jsonl record -> the nested form simulate() returns."""
    nodes = {n["id"]: {**n, "children": []} for n in rec["nodes"]}
    root = None
    for n in nodes.values():
        if n.get("parent") in nodes:
            nodes[n["parent"]]["children"].append(n)
        elif n.get("parent") is None:
            root = n
    if root is None:
        raise DataError(None, None, "nodes", "the cascade has no root node")
    return root


def comparison_table(sim: dict, real: dict) -> str:
    depth = max(sim["depth"], real["depth"])
    lines = ["| | simulated | real |", "|---|---|---|", f"| size | {sim['size']} | {real['size']} |",
             f"| depth | {sim['depth']} | {real['depth']} |"]
    for d in range(depth):
        s = sim["breadth"][d] if d < len(sim["breadth"]) else 0
        r = real["breadth"][d] if d < len(real["breadth"]) else 0
        lines.append(f"| breadth at depth {d + 1} | {s} | {r} |")
    return "\n".join(lines)


def run(cfg: SimulateConfig, model=None, tok=None) -> dict:
    from transformers import set_seed

    from simtune.recipes.social.model.decision import WhoDecision, has_decision
    post, real_rec = load_post(cfg.post)
    pool = load_pool(cfg.pool) if cfg.pool else None
    lines = Lines(pool, cfg.build_dir, cfg.history)
    users = list(pool) if pool is not None else lines.universe(post.get("time"))
    if not users:
        raise DataError(cfg.pool or cfg.build_dir, None, None, "the pool is empty")
    if cfg.against:
        _, real_rec = load_post(cfg.against)
        if real_rec is None:
            raise ConfigError(f"--against {cfg.against}: expected a trees.jsonl record (with 'nodes')")
    if model is None:
        from simtune.export import load_trained
        model, tok = load_trained(cfg.model)
    set_seed(cfg.seed)
    folder = cfg.model if Path(cfg.model).is_dir() else None
    mode = cfg.who if cfg.who != "auto" else ("scorer" if has_decision(folder) else "generative")
    if mode == "scorer":
        if folder is None:
            raise ConfigError(f"{cfg.source_of('who')}: --who scorer needs a model folder with who.json")
        universe = cfg.decision == "universe" or (cfg.decision == "auto" and pool is None)
        dec = WhoDecision.load(folder, model, tok)
        answer, chunk = scorer_answerer(model, tok, dec, cfg, universe), None
        candidates = (dec.candidates if cfg.candidates is None else cfg.candidates) if universe else 0
    else:
        answer, chunk, candidates = generative_answerer(model, tok, cfg), cfg.pool_chunk, 0
    tree = simulate(answer, post, users, lines, cfg, chunk, candidates)
    result = {"post": post, "who": mode, "pool_size": len(users), "tree": tree, "stats": tree_stats(tree),
              "truncated": bool(tree.get("truncated")),
              "config": cfg.to_dict()}
    if real_rec is not None:
        result["real_stats"] = tree_stats(tree_from_record(real_rec))
        result["comparison_md"] = comparison_table(result["stats"], result["real_stats"])
    atomic_write_json(cfg.out, result)
    return result


def cli_simulate(argv: list[str]) -> int:
    cfg = SimulateConfig.from_argv(
        argv, usage="usage: simtune simulate --model M --post FILE --pool FILE [--against FILE] [--key value ...]")
    if cfg is None:
        return 0
    res = run(cfg)
    s = res["stats"]
    print(f"simulated cascade ({res['who']}, pool of {res['pool_size']}): {s['size']} reactions, depth {s['depth']}, "
          f"breadth per level {s['breadth']}" + (" (truncated at --max_children / --max_nodes)" if res["truncated"] else ""))
    if "comparison_md" in res:
        print(res["comparison_md"])
    print(f"written: {cfg.out}")
    return 0
