"""Interaction trees: one tree builder for every corpus (order, window, orphans, cycles and
duplicates decided once), fed item by item by the readers (weibo.py, ced.py, diffusion.py)."""
from __future__ import annotations

from array import array
from collections import Counter
from typing import Callable

import orjson

from simtune.io import RejectLog
from simtune.pseudonym import MentionScrubber
from simtune.recipes.social.data.records import EARLY_TEXTS_PER_USER
from simtune.recipes.social.data.users import UserIndex
from simtune.recipes.social.schema import KIND_CODE, R_BEFORE_PARENT, R_CYCLE, R_DUPLICATE, R_ORPHAN, R_PARENT_MISSING


class Item:
    """One interaction before checks. ``depth`` is known (> 0) for nested items, 0 when the
    item names its parent by id (flat form) and the depth must be found by walking links."""

    __slots__ = ("id", "user", "action", "text", "time", "parent", "line", "fld", "k", "depth", "pitem")

    def __init__(self, id, user, action, text, time, parent, line, fld, k=None, depth=0, pitem=None):
        self.id, self.user, self.action, self.text, self.time = id, user, action, text, time
        self.parent, self.line, self.fld, self.k, self.depth = parent, line, fld, k, depth
        self.pitem = pitem  # the enclosing Item for nested replies (None: root or a flat `parent` id)

    @property
    def field(self) -> str:
        return self.fld if self.k is None else f"{self.fld}[{self.k}]"


def reject_reason(reason: str, detail: str = "") -> str:
    return f"{reason}: {detail}" if detail else reason


class TreeBatch:
    """What :func:`make_tree` makes for a run of posts, appended in order: the tree lines
    (``blob``) and the activity of their nodes, root first (``users``, ``times``,
    ``kinds``, ``texts``). Compact, so that a worker process sends it back cheaply."""

    __slots__ = ("blob", "users", "times", "kinds", "texts")

    def __init__(self):
        self.blob = bytearray()
        self.users: list[str] = []
        self.times = array("q")
        self.kinds = array("b")
        self.texts: list[str] = []


def make_tree(file: str, line: int | None, root: dict, items: list[Item], source: str, window: int,
              batch: TreeBatch, extra: dict | None = None) -> tuple:
    """The checks and the tree of one post, as if its root id were new (no shared state, so
    it can run in a worker process); the tree line and activity are appended to ``batch``.
    Returns ``(root id, item rejects [(file, line, reason, field)], tree line length in
    bytes, activity records, interactions kept, dropped after the window, root time)``
    for :meth:`TreeBuilder.apply`."""
    rid = root["id"]
    rej: list[tuple] = []
    # state is keyed by Item object (identity): a repeated id must not merge two items
    by_id: dict[str, Item] = {}
    depth: dict[Item, int] = {}
    status: dict[Item, str] = {}
    for it in items:
        if it.id in by_id or it.id == rid:
            status[it] = R_DUPLICATE  # its nested replies become orphans below
            rej.append((file, it.line, reject_reason(R_DUPLICATE, f"node id {it.id} repeated"), it.field + ".id"))
        else:
            by_id[it.id] = it
    fast = not status and all(it.depth for it in items)
    if fast:  # nested form: depths known, items already parent-first
        for it in items:
            depth[it] = it.depth
    # otherwise depth by walking parent links; cycles and dangling parents are rejected
    for it in (() if fast else items):
        if it in depth or it in status:
            continue
        path: list[Item] = []
        onpath: dict[Item, int] = {}
        cur = it
        d = 0
        while True:
            if cur in depth:
                d = depth[cur]
                break
            if cur in status:
                d = -1
                break
            if cur in onpath:
                start = onpath[cur]
                for n in path[start:]:
                    status[n] = R_CYCLE
                path = path[:start]
                d = -1
                break
            onpath[cur] = len(path)
            path.append(cur)
            nxt = cur.pitem
            if nxt is None:
                p = cur.parent
                if p is None or p == rid:
                    d = 0
                    break
                nxt = by_id.get(p)
                if nxt is None:
                    path.pop()
                    status[cur] = R_PARENT_MISSING
                    d = -1
                    break
            cur = nxt
        for n in reversed(path):
            if d < 0:
                status[n] = R_ORPHAN
            else:
                d += 1
                depth[n] = d
    for it, why in status.items():
        if why == R_DUPLICATE:
            continue  # logged above
        detail = {R_PARENT_MISSING: f"parent {it.parent} not found", R_CYCLE: "parent links loop",
                  R_ORPHAN: "an ancestor was rejected"}[why]
        rej.append((file, it.line, reject_reason(why, detail), it.field + ".parent"))
    # time checks parent-first: before-parent rejected, after-window dropped
    t0 = root["time"]
    end = t0 + window
    times: dict[Item | None, int] = {None: t0}
    gone: dict[Item, str] = {}
    kept: list[Item] = []
    n_drop = 0
    for it in (items if fast else sorted(depth, key=depth.__getitem__)):
        par = it.pitem if it.pitem is not None else (
            None if it.parent is None or it.parent == rid else by_id[it.parent])
        if par in gone:
            why = gone[par]
            gone[it] = why
            if why == "after_window":
                n_drop += 1
            else:
                rej.append((file, it.line, reject_reason(R_ORPHAN, "an ancestor was rejected"), it.field + ".parent"))
            continue
        tp = times[par]
        if it.time < tp:
            gone[it] = R_BEFORE_PARENT
            rej.append((file, it.line, reject_reason(R_BEFORE_PARENT, f"{it.time} is before its parent's {tp}"),
                        it.field + ".created_at"))
            continue
        if it.time > end:
            gone[it] = "after_window"
            n_drop += 1
            continue
        times[it] = it.time
        kept.append(it)
    kept.sort(key=lambda x: (x.time, depth[x]))
    ru, rt = root["user"], root["text"]
    b_users, b_times, b_kinds, b_texts = batch.users, batch.times, batch.kinds, batch.texts
    b_users.append(ru)
    b_times.append(t0)
    b_kinds.append(0)
    b_texts.append(rt)
    nodes = [{"id": rid, "user": ru, "action": "post", "text": rt, "time": t0, "parent": None, "depth": 0}]
    for it in kept:
        b_users.append(it.user)
        b_times.append(it.time)
        b_kinds.append(KIND_CODE[it.action])
        b_texts.append(it.text)
        nodes.append({"id": it.id, "user": it.user, "action": it.action, "text": it.text, "time": it.time,
                      "parent": it.parent if it.parent is not None else rid, "depth": depth[it]})
    rec = {"root_id": rid, "source": source, "file": file, "line": line, "root_time": t0,
           "window_end": end, "n_dropped_window": n_drop, "nodes": nodes}
    if extra:
        rec.update(extra)
    n0 = len(batch.blob)
    batch.blob += orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
    return rid, rej, len(batch.blob) - n0, len(kept) + 1, len(kept), n_drop, t0


class TreeBuilder:
    """The run's shared state: records each checked tree (:func:`make_tree`) in order:
    duplicate roots, rejects, counts, the user index and activity, the tree line."""

    def __init__(self, out_fh, users: UserIndex, rejects: RejectLog, window_seconds: int,
                 canon: Callable[[str], str] | None = None, pz: Callable[[str], str] | None = None,
                 mentions: MentionScrubber | None = None):
        self.out = out_fh
        self.mentions = mentions  # rewrites @mentions in texts (CED), or None
        self.canon = canon  # raw user id -> the id written (id map, then pseudonym); None = as read
        self.pz = pz        # the pseudonymizer (screen names), or None
        self.users = users
        self.rejects = rejects
        self.window = window_seconds
        self.c: Counter = Counter()          # counts in / out
        self.dropped: Counter = Counter()    # dropped (not errors) by reason
        self.root_ids: set[str] = set()
        self.profile_tried: set[str] = set()  # users whose embedded profile was looked at
        self.root_times = array("q")

    def reject_post(self, file, line, reason, field=None, detail="", record=None):
        self.c["posts_rejected"] += 1
        self.rejects.reject(file, line, reject_reason(reason, detail), field=field, record=record)

    def reject_item(self, file, line, reason, field=None, detail=""):
        self.c["interactions_rejected"] += 1
        self.rejects.reject(file, line, reject_reason(reason, detail), field=field)

    def add(self, file: str, line: int | None, root: dict, items: list[Item], source: str, extra: dict | None = None) -> bool:
        if root["id"] in self.root_ids:  # rejected anyway: not worth building
            return self._duplicate_root(root["id"], len(items), file, line)
        batch = TreeBatch()
        made = make_tree(file, line, root, items, source, self.window, batch, extra)
        return self.apply(made, len(items), file, line, batch, 0, 0)

    def _duplicate_root(self, rid: str, n_items: int, file: str, line: int | None) -> bool:
        self.reject_post(file, line, R_DUPLICATE, "id", f"root {rid} seen before")
        self.c["interactions_rejected_with_post"] += n_items
        return False

    def embedded_profiles(self, attempts: list[tuple[str, bytes | None]]) -> None:
        """``(user id, normalized profile or None)`` for users seen in a post, in order: the
        first sighting of a user in the run decides, and only a user without a profile
        gets one."""
        tried, users = self.profile_tried, self.users
        for uid, prof in attempts:
            if uid in tried:
                continue
            tried.add(uid)
            if prof is not None and users.pos.get(uid) not in users.profiles:
                users.set_profile_json(uid, prof)

    def _activity(self, batch: TreeBatch, a: int, b: int) -> None:
        """Activity records ``[a, b)`` of ``batch`` into the user index (users get their
        dense index in order of first appearance)."""
        users = self.users
        pos, profiles, index = users.pos, users.profiles, users.index
        au = batch.users if a == 0 and b == len(batch.users) else batch.users[a:b]
        idx = list(map(pos.get, au))
        if None in idx:  # users seen for the first time get their index in order of appearance
            for k in range(idx.index(None), len(idx)):
                if idx[k] is None:
                    idx[k] = index(au[k])
        users.act_user.fromlist(idx)
        users.act_time.extend(batch.times[a:b])
        users.act_kind.extend(batch.kinds[a:b])
        no_profile = None if profiles.keys() >= set(idx) else [k for k, i in enumerate(idx) if i not in profiles]
        if no_profile:
            texts, times, early, kept = batch.texts, batch.times, users.add_early_text, users.early_texts
            full = EARLY_TEXTS_PER_USER
            for k in no_profile:
                x = texts[a + k]
                if x:
                    i, t = idx[k], times[a + k]
                    lst = kept.get(i)
                    if lst is None or len(lst) < full or t < lst[-1][0]:  # else: not among the earliest
                        early(i, t, x)

    def apply(self, made: tuple, n_items: int, file: str, line: int | None, batch: TreeBatch, boff: int,
              aoff: int) -> bool:
        """Record one tree from :func:`make_tree` whose line starts at byte ``boff`` of
        ``batch.blob`` and whose activity at record ``aoff`` (``n_items``: the post's items
        that were checked, counted as rejected with the post when its root id was seen
        before)."""
        rid, rej, n_bytes, n_act, n_kept, n_drop, t0 = made
        if rid in self.root_ids:
            return self._duplicate_root(rid, n_items, file, line)
        self.root_ids.add(rid)
        for f, ln, reason, fld in rej:
            self.c["interactions_rejected"] += 1
            self.rejects.reject(f, ln, reason, field=fld)
        self.dropped["after_window"] += n_drop
        self._activity(batch, aoff, aoff + n_act)
        self.out.write(memoryview(batch.blob)[boff:boff + n_bytes])
        self.root_times.append(t0)
        self.c["posts_out"] += 1
        self.c["interactions_out"] += n_kept
        return True

    def record_chunk(self, file: str, posts: list, batch: TreeBatch) -> None:
        """Record the :meth:`WeiboParser.add_line` results of one piece of input (pieces
        must come in input order). A piece without rejects, embedded profiles or repeated
        root ids (the usual case) is recorded in bulk; otherwise post by post."""
        made = [r[3] for _, r in posts]
        rids = [m[0] for m in made if m is not None]
        if (len(rids) == len(posts) and not any(r[0] or r[1] or r[3][1] for _, r in posts)
                and len(set(rids)) == len(rids) and self.root_ids.isdisjoint(rids)):
            self.root_ids.update(rids)
            self._activity(batch, 0, len(batch.users))
            self.out.write(batch.blob)
            self.root_times.fromlist([m[6] for m in made])
            self.c["posts_out"] += len(rids)
            self.c["interactions_out"] += sum(m[4] for m in made)
            self.dropped["after_window"] += sum(m[5] for m in made)
            return
        boff = aoff = 0
        for no, (rej, profs, n_items, m) in posts:
            if profs:
                self.embedded_profiles(profs)
            for f, ln, reason, fld, record in rej:
                self.rejects.reject(f, ln, reason, field=fld, record=record)
            if m is not None:
                self.apply(m, n_items, file, no, batch, boff, aoff)
                boff += m[2]
                aoff += m[3]
