"""The one-pass tree of the usual post (``WeiboParser._fast_tree``) against the general
path (``_items`` then ``make_tree``): every output the same, on posts that take the fast
path and on posts it must hand over (rejects, flat links, odd types, drops, repeats)."""
from __future__ import annotations

import hashlib
import json

import pytest

from simtune.io import MARKER  # holds a random run id: differs by design
from simtune.recipes.social.data import build, weibo
from simtune.recipes.social.schema import format_weibo_time, format_iso_time

T = 1_700_000_000


def it(iid, uid, dt, text="hi", **kw):
    d = {"id": iid, "user": {"id": uid}, "text_raw": text, "created_at": format_weibo_time(T + dt)}
    d.update(kw)
    return d


def iso(iid, uid, dt, text="hi", **kw):
    return {**it(iid, uid, dt, text, **kw), "created_at": format_iso_time(T + dt)}


def posts() -> list:
    p = []
    k = 0

    def root(*comments, reposts=(), uid="r", **kw):
        nonlocal k
        k += 1
        d = {"id": f"p{k}", "user": {"id": uid, "screen_name": f"s{uid}", "description": "d"}, "text_raw": "root",
             "created_at": format_weibo_time(T), "comments": list(comments), "reposts": list(reposts)}
        d.update(kw)
        p.append(d)

    root(it(1, 10, 5), iso(2, "11", 5, comments=[it(3, 12, 9, reposts=[it(4, 13, 9)])]), reposts=[it(5, 10, 5)])
    root(it(6, 14, 50, replies=[it(7, 15, 60)], comments=[it(8, 16, 55)], reposts=[it(9, 17, 70)]))
    root(it(10, 10, 9 * 86400, comments=[it(11, 12, 5), it(12, 13, 9 * 86400 + 5)]), it(13, 18, 3))  # dropped, below too
    root(it(14, 10, 5, comments=[it(15, 12, 2)]))                            # before its parent
    root(it(16, 10, 5), it(16, 11, 6))                                       # repeated id
    root(it("p6", 10, 5))                                                    # the root's id
    root(it(17, 10, 5), it(18, 11, 6, parent="17"))                          # flat link
    root(it(19, 10, 5, parent=None), it(20, 11, 6, parent=""))
    root(it(21, 10, 5), None, it(22, 11, 6))                                 # null item
    root(it(23, 10.0, 5), it(24, True, 5), it(25, "", 5), it(26, [1], 5))    # bad user ids
    root({"id": 27, "user": {"idstr": "30"}, "text_raw": "x", "created_at": format_weibo_time(T + 5)})
    root({"id": 28, "user": {"id": 30}, "text": "text, not text_raw", "created_at": format_weibo_time(T + 5)})
    root({"id": 29, "user": {"id": 30}, "created_at": format_weibo_time(T + 5)}, reposts=[
        {"id": 31, "user": {"id": 30}, "created_at": format_weibo_time(T + 5)}])  # no text
    root(it(32, 10, 5, "微博热搜".encode().decode("latin-1")), it(33, 11, 5, "真的 🔥"))
    root({"id": 34, "user": {"id": 30}, "text_raw": "x", "created_at": T + 5},
         {"id": 35, "user": {"id": 30}, "text_raw": "x", "created_at": "2023-11-15 10:00"},
         {"id": 36, "user": {"id": 30}, "text_raw": "x", "created_at": "Tue Nov 14 99:00:00 +0800 2023"})
    root({"mid": "37", "user": {"id": 31}, "text_raw": "x", "created_at": format_weibo_time(T + 5)},
         {"user": {"id": 31}, "text_raw": "x", "created_at": format_weibo_time(T + 5)})  # no id
    root(it(38, 10, 5, comments="not a list"), it(39, 11, 5, reposts=None, replies=[]))
    root(it(40, 10, 5, source="web", comments=[]), it(41, 12, 5, extra={"a": 1}))
    root(it(42, 10, 5), reposts=[it(43, 10, 5), it(44, 10, 5)], uid="10")  # ties: walk order kept
    root(it(60, 10, 5, reposts=[it(61, 11, 7)], replies=[it(62, 12, 7)], comments=[it(63, 13, 7, comments=[it(64, 14, 7)])]),
         it(65, 15, 7))
    root(it(45, 50, 5, user={"id": 51, "screen_name": "named", "interests": ["a"]}),
         it(46, 52, 6, user={"id": 52, "screen_name": "x", "interests": "not, a, list"}), uid="53")
    root(it(47, 10, 5, comments=[it(48, 11, 4 * 86400, comments=[it(49, 12, 8 * 86400)])]))
    return p


def _digest(out) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes().replace(str(out).encode(), b"")).hexdigest()
            for f in sorted(out.iterdir()) if f.name not in ("summary.json", MARKER)} | {
        "summary": {k: v for k, v in json.loads((out / "summary.json").read_text()).items() if k != "seconds"}}


@pytest.mark.parametrize("pseudonymize", [False, True])
def test_fast_tree_same_as_general_path(tmp_path, monkeypatch, pseudonymize):
    src = tmp_path / "posts.jsonl"
    src.write_bytes(b"".join(json.dumps(x, ensure_ascii=False).encode() + b"\n" for x in posts()))
    outs = {}
    for mode in ("fast", "general"):
        if mode == "general":
            monkeypatch.setattr(weibo.WeiboParser, "_fast_tree", lambda *a: None)
        kw = {}
        if pseudonymize:
            from simtune.pseudonym import Pseudonymizer

            kw["pseudonymizer"] = Pseudonymizer(b"salt")
        build.build_trees(inputs=[str(src)], profiles=None, id_map=None, ced_dir=None, ced_limit=None,
                          out_dir=str(tmp_path / mode), window_seconds=7 * 86400, strict=False, progress=False, **kw)
        outs[mode] = _digest(tmp_path / mode)
    assert outs["fast"] == outs["general"]
    s = outs["fast"]["summary"]
    assert s["counts"]["posts_out"] > 10 and s["rejected_by_reason"]  # both paths were taken


def test_fast_tree_taken_for_the_usual_post():
    p = weibo.WeiboParser(None, 8 * 3600, 7 * 86400)
    calls = []
    orig = p._fast_tree
    p._fast_tree = lambda *a: calls.append(orig(*a)) or calls[-1]
    line = json.dumps(posts()[0]).encode()
    rej, _, n, made = p.add_line("f", 1, line)
    assert calls and calls[0] is not None and made is calls[0] and n == 5 and not rej
