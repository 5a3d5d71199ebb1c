"""A ``trees.jsonl`` line as pass 2 reads it: checked into nodes by id and children by
parent (:func:`index_tree`), and a node's subtrees written back as nested JSON at any depth
(:func:`subtree_json`)."""
from __future__ import annotations

from typing import Sequence

import orjson


DEEP_LEVELS = 100  # subtrees with more levels than this are written by subtree_json (orjson stops at 255 nestings)


class BadTree(ValueError):
    """A trees.jsonl line whose nodes do not form the tree ``build`` writes (edited by hand?)."""


def index_tree(tree: dict) -> tuple[dict, dict]:
    """``(node by id, child ids by parent id)`` of a tree line, checked: the first node is the
    root (id ``root_id``, no parent, depth 0); every other node has an id of its own (a
    string) and a parent that comes before it in the list, one level above it and not later
    than it. :class:`BadTree` otherwise: a repeated id would hang a reply under the wrong
    parent, a node that is its own parent would leave the tree silently."""
    nodes = tree["nodes"]
    root = nodes[0]
    rid = root["id"]
    if rid != tree["root_id"] or root["parent"] is not None or root["depth"] != 0:
        raise BadTree("the first node is not the root (id root_id, parent null, depth 0)")
    byid = {rid: root}
    kids: dict[str, list[str]] = {}
    for k in range(1, len(nodes)):
        n = nodes[k]
        nid, p = n["id"], n["parent"]
        if type(nid) is not str or nid in byid:
            raise BadTree(f"node {k}: id {str(nid)[:40]!r} " + ("repeated" if nid in byid else "is not a string"))
        par = byid.get(p)
        if par is None:
            why = "is the node itself" if p == nid else "is not an earlier node"
            raise BadTree(f"node {k} ({nid[:40]!r}): its parent {str(p)[:40]!r} {why}")
        if n["depth"] != par["depth"] + 1 or n["time"] < par["time"]:
            raise BadTree(f"node {k} ({nid[:40]!r}): depth or time do not follow its parent's")
        byid[nid] = n
        kids.setdefault(p, []).append(nid)
    return byid, kids


def subtree_json(top: Sequence[str], kids: dict, byid: dict, budget: int | None = None) -> bytes:
    """The ``children`` column: the nodes ``top`` with their subtrees as nested JSON
    (``{"id", "user", "action", "text", "time", "children": [...]}``), walked depth first with
    an explicit stack (no recursion: any depth). ``budget``: at most that many nodes below
    ``top`` (pre-order; the rest are cut). The same bytes as ``orjson.dumps`` of the nested dicts."""
    buf = bytearray(b"[")
    stack = [iter(top)]  # the siblings left at each level
    first = [True]       # whether the next node at that level is the first of its list
    while stack:
        nid = next(stack[-1], None)
        if nid is not None and len(stack) > 1 and budget is not None:  # `top` is not counted
            if budget <= 0:
                nid = None
            else:
                budget -= 1
        if nid is None:
            stack.pop()
            first.pop()
            buf += b"]}" if stack else b"]"
            continue
        if not first[-1]:
            buf += b","
        first[-1] = False
        n = byid[nid]
        buf += orjson.dumps({"id": nid, "user": n["user"], "action": n["action"], "text": n["text"],
                             "time": n["time"]})[:-1]
        buf += b',"children":['
        stack.append(iter(kids.get(nid, ())))
        first.append(True)
    return bytes(buf)
