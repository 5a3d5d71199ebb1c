"""`simtune simulate`: a whole cascade for a new post, breadth first.

Level 0 asks the model which pool users react to the post; every predicted reaction
becomes a parent at the next level, where the model is asked who reacts to it (the
thread so far in the prompt), down to ``depth_limit``. Pools larger than ``pool_chunk``
are asked in chunks (one prompt each) and the answers united; all prompts of a level are
generated together in batches. With ``--against`` the simulated tree's size, depth and
breadth per level are printed beside a real cascade's.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from simtune.config import BaseConfig, ConfigError, opt
from simtune.io import DataError, atomic_write_json
from simtune.recipes.social.samples import PROFILE_CHARS, _clip, build_prompt, parse_answer


@dataclass
class SimulateConfig(BaseConfig):
    model: str = opt("default", "model (folder, .gguf, 'default')")
    post: Optional[str] = opt(None, "JSON file: {text, user[, time]}, or one trees.jsonl record (its root is the post)", required=True)
    pool: Optional[str] = opt(None, "JSON file: {user_id: profile} or [{id, profile}]; profile = text or {interests, description, ...}", required=True)
    against: Optional[str] = opt(None, "a real cascade to compare with: a trees.jsonl record (JSON file); default: --post when it is one")
    depth_limit: int = opt(2, "levels below the post to simulate (1 = direct reactions only)", min=1)
    pool_chunk: int = opt(20, "candidates per prompt", min=1)
    max_children: int = opt(20, "at most this many reactions per parent", min=1)
    max_nodes: int = opt(200, "stop expanding once the tree has this many nodes", min=1)
    do_sample: bool = opt(False, "sample instead of greedy decoding")
    temperature: float = opt(0.7, "sampling temperature", min=0.0)
    top_p: float = opt(0.95, "nucleus sampling", min=0.0, max=1.0)
    max_new_tokens: int = opt(256, "tokens per answer", min=1)
    batch_size: int = opt(8, "generation batch size", min=1)
    answer_order: str = opt("pool", "the answer order the model was trained with (`data social samples --answer_order`)",
                            choices=["pool", "time"])
    constrained: bool = opt(True, "constrained decoding: answers always parse and name pool candidates only")
    seed: int = opt(0, "random seed")
    out: str = opt("outputs/social/simulated.json", "where to write the simulated tree (JSON)")


def profile_text(p) -> str:
    """A one-line candidate profile from a profile object (or a string)."""
    if isinstance(p, str):
        return _clip(p, PROFILE_CHARS) or "no profile"
    if not isinstance(p, dict):
        return "no profile"
    bits = []
    if p.get("interests"):
        bits.append("interests: " + ", ".join(map(str, p["interests"])))
    if isinstance(p.get("description"), str) and p["description"]:
        bits.append(p["description"])
    if not bits:
        bits += [str(p[k]) for k in ("location", "gender") if p.get(k)]
    return _clip("; ".join(bits), PROFILE_CHARS) or "no profile"


def load_pool(path: str | os.PathLike) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, getattr(e, "lineno", None), None, f"cannot read the pool: {e}") from None
    if isinstance(data, dict):
        return {str(k): profile_text(v) for k, v in data.items()}
    if isinstance(data, list):
        pool = {}
        for i, rec in enumerate(data, 1):
            if not isinstance(rec, dict) or "id" not in rec:
                raise DataError(path, i, "id", "each pool entry needs an 'id'")
            pool[str(rec["id"])] = profile_text(rec.get("profile", rec))
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


def simulate(model, tok, post: dict, pool: dict[str, str], cfg: SimulateConfig) -> dict:
    """Breadth-first simulation; returns the tree {user, action, text, depth, children}."""
    from simtune.generation import generate
    root = {"user": post["user"], "action": "post", "text": post["text"], "depth": 0, "children": []}
    level = [(root, [])]  # (node, chain of ancestors below the root)
    n_nodes = 1
    for depth in range(cfg.depth_limit):
        asks = []  # (parent node, chain, candidate ids, prompt)
        for node, chain in level:
            cands = [u for u in pool if u != node["user"]]
            for s in range(0, len(cands), cfg.pool_chunk):
                chunk = cands[s:s + cfg.pool_chunk]
                asks.append((node, chain, chunk,
                             build_prompt(post["text"], post["user"], [(u, pool[u]) for u in chunk], chain,
                                          order=cfg.answer_order)))
        if not asks:
            break
        constraint = None
        if cfg.constrained:
            from simtune.recipes.social.constrained import answer_constraint_factory, eos_ids
            constraint = answer_constraint_factory(tok, [a[2] for a in asks], [a[3] for a in asks],
                                                   max_new_tokens=cfg.max_new_tokens, eos_ids=eos_ids(model))
        outs = generate(model, tok, [a[3] for a in asks], max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                        do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p, constraint=constraint)
        nxt = []
        for (node, chain, chunk, _), text in zip(asks, outs):
            allowed = set(chunk)
            for e in parse_answer(text) or []:
                if (e["user"] not in allowed or len(node["children"]) >= cfg.max_children or n_nodes >= cfg.max_nodes
                        or any(c["user"] == e["user"] for c in node["children"])):
                    continue
                child = {"user": e["user"], "action": e["action"], "text": e["text"], "depth": depth + 1, "children": []}
                node["children"].append(child)
                n_nodes += 1
                nxt.append((child, chain + [{"user": e["user"], "action": e["action"], "text": e["text"]}]))
        level = nxt
    return root


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
    post, real_rec = load_post(cfg.post)
    pool = load_pool(cfg.pool)
    if not pool:
        raise DataError(cfg.pool, None, None, "the pool is empty")
    if cfg.against:
        _, real_rec = load_post(cfg.against)
        if real_rec is None:
            raise ConfigError(f"--against {cfg.against}: expected a trees.jsonl record (with 'nodes')")
    if model is None:
        from simtune.models import load_model, load_tokenizer
        tok, model = load_tokenizer(cfg.model), load_model(cfg.model, device="auto")
    set_seed(cfg.seed)
    tree = simulate(model, tok, post, pool, cfg)
    result = {"post": post, "tree": tree, "stats": tree_stats(tree), "config": cfg.to_dict()}
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
    print(f"simulated cascade: {s['size']} reactions, depth {s['depth']}, breadth per level {s['breadth']}")
    if "comparison_md" in res:
        print(res["comparison_md"])
    print(f"written: {cfg.out}")
    return 0
