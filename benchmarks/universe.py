"""What it costs to ask everyone: one post's depth-0 question scored with universes of
growing size (issue 21), on the default model.

    PYTHONPATH=src python -m benchmarks.universe [--sizes 300,1000,3000,10000] [--baseline_up_to 3000]

A synthetic corpus of 10,000 users is built; the question is its newest post's, asked about
the first N users active before it (their candidate lines as simulation writes them). Per
size: seconds and posts per second of the scoring route simulation uses (``who.prefix_logits``:
the head run once as a KV cache, the lines batched against it) beside the route before it
(the pool cut into rows of ``max_tokens``, the head repeated in each, packed), measured in the
same run up to ``--baseline_up_to`` users. The scores of the two routes are compared too.
The weights are the untrained default's (the cost does not depend on them), the score read
after ``who_layer`` layers as ``configs/social/who_default.yaml`` trains it.
Not part of `make bench` (about 10 minutes on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import ROOT, Row, device, parse_args, peak_rss_mb, report


def corpus(work: Path, users: int, posts: int) -> Path:
    from simtune.recipes.social.pipeline import prepare
    return prepare(work, users=users, posts=posts, seed=0).build


def packed_route(model, tok, pool, dec):
    """The route before ``prefix_logits``: the pool cut into pools that fit one row, packed."""
    from simtune.recipes.social.model.who import Pool, pool_probs
    parts, cur, n = [], [], len(pool.head)
    for line in pool.lines:
        if cur and n + len(line) > dec.max_tokens:
            parts.append(cur)
            cur, n = [], len(pool.head)
        cur.append(line)
        n += len(line)
    parts.append(cur)
    probs = pool_probs(model, tok, [Pool(pool.head, p, [], []) for p in parts], dec)
    return [x for ps in probs for x in ps]


def run(sizes: list[int], baseline_up_to: int, users: int, posts: int) -> dict:
    from simtune.models import load_model, load_tokenizer
    from simtune.recipes.social.model.decision import WhoDecision
    from simtune.recipes.social.simulate import Lines, node_prompt
    from simtune.recipes.social.model.who import NO, YES, encode_pool, pool_probs, token_id
    from simtune.recipes.social.universe import post_of

    with tempfile.TemporaryDirectory() as tmp:
        build = corpus(Path(tmp), users, posts)
        rec = json.loads((build / "trees.jsonl").read_text().splitlines()[-1])
        post = post_of(rec)
        lines = Lines(None, str(build))
        everyone = [u for u in lines.universe(post["time"]) if u != post["user"]]
        name = "default"
        model, tok = load_model(name, device=device()), load_tokenizer(name)
        layer = yaml.safe_load((ROOT / "configs/social/who_default.yaml").read_text())["who_layer"]  # as trained
        dec = WhoDecision(layer=layer, yes_id=token_id(tok, YES), no_id=token_id(tok, NO))
        out = {"active_before_post": len(everyone), "device": device(), "sizes": []}
        for n in [s for s in sizes if s <= len(everyone)] or [len(everyone)]:
            cands = everyone[:n]
            pool = encode_pool(tok, node_prompt(post, [], lines(cands, post["time"], [post["user"]])), cands)
            pool_probs(model, tok, [encode_pool(tok, node_prompt(post, [], lines(cands[:8], post["time"])), cands[:8])],
                       dec)  # warm-up
            t = time.perf_counter()
            fast = pool_probs(model, tok, [pool], dec)[0]
            row = {"users": n, "line_tokens": sum(map(len, pool.lines)), "head_tokens": len(pool.head),
                   "prefix_s": time.perf_counter() - t}
            if n <= baseline_up_to:
                t = time.perf_counter()
                slow = packed_route(model, tok, pool, dec)
                row["packed_s"] = time.perf_counter() - t
                row["max_score_diff"] = max(abs(a - b) for a, b in zip(fast, slow))
            print(json.dumps(row), flush=True)
            out["sizes"].append(row)
        out["peak_rss_mb"] = peak_rss_mb()
    return out


def rows(res: dict) -> list[Row]:
    out = []
    for r in res["sizes"]:
        base = r.get("packed_s")
        out.append(Row(f"universe_{r['users']}",
                    f"who out of {r['users']} users ({r['line_tokens']} line tokens): s per post, prefix cache vs "
                    "packed rows (posts/s: " + f"{1 / r['prefix_s']:.3f})",
                    f"{r['prefix_s']:.1f}", f"{base:.1f}" if base else "-",
                    f"{base / r['prefix_s']:.2f}x" if base else "", "< 10 s at 300" if r["users"] == 300 else ""))
    s = res["sizes"]
    if len(s) > 1:
        grow = (s[-1]["prefix_s"] / s[0]["prefix_s"]) / (s[-1]["users"] / s[0]["users"])
        out.append(Row("universe_growth", f"cost growth {s[0]['users']} -> {s[-1]['users']} users, relative to linear",
                    f"{grow:.2f}", "1.00", "", ""))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300,1000,3000,10000")
    ap.add_argument("--baseline_up_to", type=int, default=3000)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--posts", type=int, default=3000)
    a = parse_args(ap, argv, "bench_results/universe.json")
    res = run([int(x) for x in a.sizes.split(",")], a.baseline_up_to, a.users, a.posts)
    return report(res, rows(res), a.out)


if __name__ == "__main__":
    sys.exit(main())
