"""Pass 1: raw corpora -> interaction trees (JSON lines) + a compact per-user index.

Two input kinds, both streamed record by record:

- Weibo API JSON lines (one post per line): ``id``/``mid``, ``user`` (author object),
  ``text_raw`` or ``text``, ``created_at``, ``comments`` (each with ``user``,
  ``text_raw``, ``created_at`` and nested ``comments``/``replies``), ``reposts`` (the same,
  nested ``reposts``/``comments`` allowed). An item may instead carry ``parent`` = the id
  of another item of the same post (flat form). Plus a profile JSON (user id -> profile)
  and an optional id-mapping JSON (raw user id -> canonical id).
- CED (``weibo-ced``): ``original-microblog/<idx>_<mid>_<uid>.json`` root files and the
  matching ``rumor-repost`` / ``non-rumor-repost`` list of reposts/comments linked by
  ``parent`` (a ``mid``, ``""`` = the root). For CED, "line" in rejects is the 1-based
  position of the item in that list.

Every bad record goes to the reject log (file, line, field, reason) and is counted; the
rest is kept. Interactions later than ``window_seconds`` after the root are dropped and
counted (with everything below them).
"""
from __future__ import annotations

import io
import os
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from simtune.io import DataError, DateRange, RejectLog, require_input_file
from simtune.pseudonym import MentionScrubber, add_name, mention_summary
from simtune.recipes.social.schema import (
    _BASE_CACHE, _HMS_CACHE, KIND_CODE, R_BAD_DATE, R_BAD_ENCODING, R_BAD_JSON, R_BEFORE_PARENT, R_CYCLE, R_DUPLICATE, R_LIST_REJECTED,
    R_MISSING, R_MOJIBAKE, R_ORPHAN, R_PARENT_MISSING, R_WRONG_TYPE, DateFormatError, _fast_time, is_mojibake,
    parse_time,
)

FIRST_DATE = "2009-08-01"  # Sina Weibo opened to the public in August 2009
LAST_DATE = DateRange.TODAY
DIFFUSION_FIRST_DATE = "2005-03-01"  # Douban opened in March 2005 (Twitter in 2006)
EARLY_TEXTS_PER_USER = 3     # texts kept per profile-less user (the earliest ones)
EARLY_TEXT_CHARS = 40


def default_dates() -> DateRange:
    """The accepted dates of a social corpus unless a command says otherwise."""
    return DateRange.parse(FIRST_DATE, LAST_DATE)


class _Reject(Exception):
    def __init__(self, reason: str, field: str | None = None, detail: str = ""):
        self.reason, self.field, self.detail = reason, field, detail
        super().__init__(reason)


def decode_json_line(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject(R_BAD_ENCODING, None, "line is not valid UTF-8") from None
        raise _Reject(R_BAD_JSON, None, str(e)[:120]) from None


# --------------------------------------------------------------------------- user index

@dataclass
class UserIndex:
    """Every user seen: id <-> dense index, activity (user, time, kind) and profiles."""

    ids: list[str] = field(default_factory=list)
    pos: dict[str, int] = field(default_factory=dict)
    act_user: array = field(default_factory=lambda: array("i"))
    act_time: array = field(default_factory=lambda: array("q"))
    act_kind: array = field(default_factory=lambda: array("b"))
    profiles: dict[int, str] = field(default_factory=dict)     # idx -> profile as a JSON string
    early_texts: dict[int, list] = field(default_factory=dict)  # idx -> [[time, text], ...]

    def index(self, uid: str) -> int:
        i = self.pos.get(uid)
        if i is None:
            i = self.pos[uid] = len(self.ids)
            self.ids.append(uid)
        return i

    def set_profile(self, uid: str, profile: dict, overwrite: bool = False) -> None:
        self.set_profile_json(uid, orjson.dumps(profile), overwrite)

    def set_profile_json(self, uid: str, profile: bytes, overwrite: bool = False) -> None:
        i = self.index(uid)
        if overwrite or i not in self.profiles:
            # kept as str: a bytes object from orjson.dumps holds a 4 KiB buffer whatever its
            # length (orjson 3.13), which at 100,000 users was 400 MB
            self.profiles[i] = profile.decode()

    def add_early_text(self, i: int, t: int, text: str) -> None:
        """Keep the user's EARLY_TEXTS_PER_USER earliest texts (bounded memory)."""
        lst = self.early_texts.get(i)
        if lst is None:
            self.early_texts[i] = [[t, text[:EARLY_TEXT_CHARS]]]
        elif len(lst) < EARLY_TEXTS_PER_USER:
            lst.append([t, text[:EARLY_TEXT_CHARS]])
            lst.sort()
        elif t < lst[-1][0]:
            lst[-1] = [t, text[:EARLY_TEXT_CHARS]]
            lst.sort()


def normalize_profile(uid: str, p: Any, source: str, pz: Callable[[str], str] | None = None,
                      scrub: Callable[[str], str] | None = None) -> dict:
    """A small, uniform profile dict from a profile-JSON entry or an embedded user object
    (``pz``: the pseudonymizer, which the screen name goes through too; ``scrub``: rewrites the
    @mentions of the description)."""
    if not isinstance(p, dict):
        raise _Reject(R_WRONG_TYPE, "profile", f"profile of {uid} is {type(p).__name__}, not an object")
    out: dict[str, Any] = {"source": source}
    name = p.get("screen_name", p.get("name"))
    if isinstance(name, str) and name:
        out["screen_name"] = pz(name) if pz else name
    interests = p.get("interests")
    if isinstance(interests, str):
        interests = [s.strip() for s in interests.replace("，", ",").split(",") if s.strip()]
    if interests is not None:
        if not isinstance(interests, list) or not all(isinstance(s, str) for s in interests):
            raise _Reject(R_WRONG_TYPE, "interests", "interests must be a list of strings")
        out["interests"] = interests
    for key in ("description", "location", "gender", "style"):
        v = p.get(key)
        if isinstance(v, str) and v:
            if is_mojibake(v):
                raise _Reject(R_MOJIBAKE, key)
            out[key] = scrub(v) if scrub and key == "description" else v
    for key, alias in (("followers", "followers_count"), ("friends", "friends_count"),
                       ("messages", "statuses_count")):
        v = p.get(key, p.get(alias))
        if isinstance(v, int) and not isinstance(v, bool):
            out[key] = v
    if isinstance(p.get("verified"), bool):
        out["verified"] = p["verified"]
    return out


# --------------------------------------------------------------------------- trees

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


def _reason(reason: str, detail: str = "") -> str:
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
            rej.append((file, it.line, _reason(R_DUPLICATE, f"node id {it.id} repeated"), it.field + ".id"))
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
        rej.append((file, it.line, _reason(why, detail), it.field + ".parent"))
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
                rej.append((file, it.line, _reason(R_ORPHAN, "an ancestor was rejected"), it.field + ".parent"))
            continue
        tp = times[par]
        if it.time < tp:
            gone[it] = R_BEFORE_PARENT
            rej.append((file, it.line, _reason(R_BEFORE_PARENT, f"{it.time} is before its parent's {tp}"),
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
        self.rejects.reject(file, line, _reason(reason, detail), field=field, record=record)

    def reject_item(self, file, line, reason, field=None, detail=""):
        self.c["interactions_rejected"] += 1
        self.rejects.reject(file, line, _reason(reason, detail), field=field)

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


# --------------------------------------------------------------------------- Weibo API

def _get_uid(u: Any, fld: str, canon: Callable[[str], str] | None) -> str:
    if u is None:
        raise _Reject(R_MISSING, fld)
    if not isinstance(u, dict):
        raise _Reject(R_WRONG_TYPE, fld, f"expected an object, got {type(u).__name__}")
    uid = u.get("id", u.get("idstr"))
    if uid is None or uid == "":
        raise _Reject(R_MISSING, fld + ".id")
    if isinstance(uid, bool) or not isinstance(uid, (int, str)):
        raise _Reject(R_WRONG_TYPE, fld + ".id", f"expected a string or integer, got {type(uid).__name__}")
    uid = str(uid)
    return canon(uid) if canon else uid


def _get_text(o: dict, fld: str, required: bool) -> str:
    t = o.get("text_raw")
    if t is None:
        t = o.get("text")
    if t is None:
        if required:
            raise _Reject(R_MISSING, fld + ".text_raw")
        return ""
    if not isinstance(t, str):
        raise _Reject(R_WRONG_TYPE, fld + ".text_raw", f"expected a string, got {type(t).__name__}")
    if t and not t.isascii() and is_mojibake(t):
        raise _Reject(R_MOJIBAKE, fld + ".text_raw", "text looks like mis-decoded UTF-8")
    return t


def _get_time(o: dict, fld: str, tz: int, dates: DateRange, ref: int | None = None) -> int:
    v = o.get("created_at")
    if v is None:
        raise _Reject(R_MISSING, fld + ".created_at")
    return _checked_time(v, fld + ".created_at", tz, dates, ref)


def _checked_time(v: Any, fld: str, tz: int, dates: DateRange, ref: int | None = None) -> int:
    """A date field as unix seconds: in a known form (:func:`parse_time`) and inside ``dates``
    (the corpus's accepted range); otherwise a ``bad_date`` reject naming ``fld``."""
    try:
        t = parse_time(v, tz, ref)
    except DateFormatError as e:
        raise _Reject(R_BAD_DATE, fld, str(e)) from None
    if not dates.holds_time(t):
        raise _Reject(R_BAD_DATE, fld, f"{str(v)[:40]} is outside the accepted dates {dates} (first_date, last_date)")
    return t


def _get_id(o: dict, fld: str) -> str | None:
    v = o.get("id", o.get("mid", o.get("idstr")))
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Reject(R_WRONG_TYPE, fld + ".id", f"expected a string or integer, got {type(v).__name__}")
    return str(v)


_END = object()


def _count_nested(o: Any) -> int:
    n = 0
    if isinstance(o, dict):
        for key in ("comments", "replies", "reposts"):
            sub = o.get(key)
            if isinstance(sub, list):
                for s in sub:
                    n += 1 + _count_nested(s)
    return n


class WeiboParser:
    """One Weibo API post (a JSON line) -> what :class:`TreeBuilder` records: the parse-time
    rejects, the embedded profiles seen, and the checked tree (:func:`make_tree`). Pure
    apart from its own caches and counters, so chunks of lines can be parsed in worker
    processes; the builder then records the results in line order."""

    def __init__(self, canon: Callable[[str], str] | None, tz_offset: int, window_seconds: int,
                 embedded_profiles: bool = True, pz: Callable[[str], str] | None = None,
                 dates: DateRange | None = None, mentions: MentionScrubber | None = None):
        self.canon = canon  # raw user id -> the id written (id map, then pseudonym); None = as read
        self.pz = pz        # the pseudonymizer (screen names), or None
        self.pid = getattr(pz, "post", None)  # raw post/comment/repost id -> its pseudonym, or None
        self.tz = tz_offset
        self.dates = dates or default_dates()  # the accepted dates; others are rejected (bad_date)
        self.window = window_seconds
        self.embedded = embedded_profiles
        self.tried: set[str] = set()  # users whose embedded profile this parser has looked at
        self.c: Counter = Counter()   # parse-time counts (in, rejected before the tree checks)
        self.batch = TreeBatch()      # trees made since the last take()
        self._uids: dict = {}         # user id as read (int or str) -> the id written, one str object per user
        self.mentions = mentions      # rewrites @mentions in texts, or None (texts as written)
        self._names: dict | None = None  # the names of the users of the post being read (for mentions)

    def take(self) -> tuple[Counter, TreeBatch]:
        """The parse-time counts and the trees made since the last call (then reset)."""
        if self.mentions is not None:
            self.c.update(self.mentions.take_counts())
        c, self.c = self.c, Counter()
        b, self.batch = self.batch, TreeBatch()
        return c, b

    def _profile_from_user(self, uid: str, u: dict, out: list) -> None:
        """The first sighting (for this parser) of a user: ``(uid, profile bytes or None)``;
        :meth:`TreeBuilder.embedded_profiles` keeps the first sighting in the run."""
        if uid in self.tried:
            return
        self.tried.add(uid)
        prof = None
        if "screen_name" in u or "description" in u or "interests" in u:
            try:
                prof = orjson.dumps(normalize_profile(uid, u, "embedded", self.pz, self._scrub))
            except _Reject:
                pass  # a bad embedded profile is not a bad post: the user just has none
        out.append((uid, prof))

    def _written(self, raw_uid: Any) -> str:
        """A user id as read (str or int) -> the id written (one str object per user)."""
        w = self._uids.get(raw_uid)
        if w is None:
            w = self._uids[raw_uid] = self.canon(str(raw_uid)) if self.canon else str(raw_uid)
        return w

    def _post_names(self, obj: dict) -> dict[str, str | None]:
        """Name -> id as written of every user object in a post (root, comments, replies,
        reposts, at any depth; walked without recursion), for the mentions in its texts."""
        names: dict[str, str | None] = {}
        stack = [obj]
        while stack:
            o = stack.pop()
            if type(o) is not dict:
                continue
            u = o.get("user")
            if type(u) is dict:
                uid = u.get("id", u.get("idstr"))
                if (type(uid) is int or type(uid) is str) and uid != "":
                    add_name(names, u.get("screen_name", u.get("name")), self._written(uid))
            for key in ("comments", "replies", "reposts"):
                sub = o.get(key)
                if type(sub) is list:
                    stack.extend(sub)
        return names

    def _scrub(self, text: str) -> str:
        """``text`` with its @mentions rewritten (names: the post's users, then the profiles)."""
        return self.mentions(text, self._names) if self.mentions is not None and "@" in text else text

    def _items(self, lst: Any, fld: str, parent: str | None, pdepth: int, action: str, root_id: str, line: int,
               out: list[Item], file: str, counter: list[int], rej: list, profs: list | None,
               pitem: Item | None = None) -> None:
        """Append the items of ``lst`` (and their nested replies) to ``out``, parent first.
        ``counter`` = [items seen (all, for the in-count), items without an id so far];
        ``rej`` gets the rejects, ``profs`` the embedded profiles (None: not wanted)."""
        if lst is None:
            return
        if not isinstance(lst, list):
            raise _Reject(R_WRONG_TYPE, fld, f"expected a list, got {type(lst).__name__}")
        canon, tz, pid, dates = self.canon, self.tz, self.pid, self.dates
        lo, hi = dates.lo, dates.hi
        scrub, names = self.mentions, self._names
        depth = pdepth + 1
        counter[0] += len(lst)
        for k, o in enumerate(lst):
            try:
                if type(o) is not dict:
                    raise _Reject(R_WRONG_TYPE, f"{fld}[{k}]", f"expected an object, got {type(o).__name__}")
                # fast paths for well-formed fields; the slow helpers give the precise reject
                u = o.get("user")
                uid = u.get("id") if type(u) is dict else None
                if type(uid) is int:
                    uid = str(uid)
                elif type(uid) is not str or not uid:
                    uid = _get_uid(u, f"{fld}[{k}].user", None)
                if canon:
                    uid = canon(uid)
                text = o.get("text_raw")
                if type(text) is not str or (not text.isascii() and is_mojibake(text)):
                    text = _get_text(o, f"{fld}[{k}]", required=(action == "comment"))
                if scrub is not None and "@" in text:
                    text = scrub(text, names)
                ts = o.get("created_at")
                t = _fast_time(ts) if type(ts) is str else None
                if t is None or not lo <= t <= hi:
                    t = _get_time(o, f"{fld}[{k}]", tz, dates)
                iid = o.get("id")
                if type(iid) is int:
                    iid = str(iid)
                elif type(iid) is not str or not iid:
                    iid = _get_id(o, f"{fld}[{k}]")
                if iid is None:  # an id made up from root_id, which is already as written
                    counter[1] += 1
                    iid = f"{root_id}/{action[0]}{counter[1]}"
                elif pid:
                    iid = pid(iid)
                p, d, pi = parent, depth, pitem
                if "parent" in o and o["parent"] not in (None, ""):
                    if isinstance(o["parent"], bool) or not isinstance(o["parent"], (str, int)):
                        raise _Reject(R_WRONG_TYPE, f"{fld}[{k}].parent")
                    p, d, pi = str(o["parent"]), 0, None
                    if pid:
                        p = pid(p)
            except _Reject as r:
                rej.append((file, line, _reason(r.reason, r.detail), r.field, None))
                n = _count_nested(o)
                counter[0] += n
                for _ in range(n):
                    rej.append((file, line, _reason(R_ORPHAN, "an ancestor was rejected"), f"{fld}[{k}]", None))
                continue
            if profs is not None and uid not in self.tried:
                self._profile_from_user(uid, u, profs)
            item = Item(iid, uid, action, text, t, p, line, fld, k, d, pi)
            out.append(item)
            for key, act in (("comments", "comment"), ("replies", "comment"), ("reposts", "repost")):
                sub = o.get(key)
                if sub is not None:
                    if not isinstance(sub, list):  # one unreadable record: counted in and rejected
                        counter[0] += 1
                        rej.append((file, line, _reason(R_WRONG_TYPE, f"expected a list, got {type(sub).__name__}"),
                                    f"{fld}[{k}].{key}", None))
                        continue
                    n0 = len(out)
                    self._items(sub, f"{fld}[{k}].{key}", iid, d, act, root_id, line, out, file, counter, rej, profs,
                                item)
                    if d == 0:  # below a flat link the depth is found later, by walking
                        for x in out[n0:]:
                            x.depth = 0

    def _fast_tree(self, file: str, line: int, obj: dict, rid: str, ruid: str, rtext: str, t0: int,
                   profs: list | None) -> tuple | None:
        """The usual post in one pass, without :class:`Item` objects: nested items only
        (no ``parent`` links), every field well-formed, no repeated id, no item before its
        parent. Returns what :func:`make_tree` returns (and appends the same tree line and
        activity to ``self.batch``), or None, having changed nothing, when the post needs
        the general path (:meth:`_items` then :func:`make_tree`), which gives the rejects."""
        uids, canon, pid = self._uids, self.canon, self.pid
        lo, hi = self.dates.lo, self.dates.hi
        scrub, names = self.mentions, self._names
        end = t0 + self.window
        seen = {rid}
        keys: list[int] = []    # (time, depth) as one int: time * 1024 + depth
        nodes: list[dict] = []  # kept nodes, in walk order (parent first)
        pend: list = []         # (user id, user object): embedded profiles to look at, in order
        tried = self.tried
        n_all = n_drop = 0
        bc, hc = _BASE_CACHE, _HMS_CACHE
        # (items left, action, parent id, parent time (None: dropped), depth), walked depth first
        stack = []
        for key, action in (("reposts", "repost"), ("comments", "comment")):
            lst = obj.get(key)
            if lst:
                stack.append((iter(lst), action, rid, t0, 1))
        while stack:
            it, action, par, ptime, d = stack.pop()
            for o in it:
                if type(o) is not dict:
                    return None
                u = o.get("user")
                if type(u) is not dict:
                    return None
                uid = u.get("id")
                tu = type(uid)
                if tu is not int and (tu is not str or not uid):
                    return None
                s_uid = uids.get(uid)  # 7 and "7" are the same user, as str(7) == "7"
                if s_uid is None:
                    s_uid = uids[uid] = canon(str(uid)) if canon else str(uid)
                text = o.get("text_raw")
                if type(text) is not str or (not text.isascii() and is_mojibake(text)):
                    return None
                if scrub is not None and "@" in text:
                    text = scrub(text, names)
                ts = o.get("created_at")
                if type(ts) is not str:
                    return None
                # _fast_time's cached path, inlined
                n = len(ts)
                base = bc.get(ts[3:11] + ts[19:]) if n == 30 else (bc.get(ts[:11] + ts[19:]) if n == 25 else None)
                hms = hc.get(ts[11:19])
                if base is None or hms is None:
                    t = _fast_time(ts)
                    if t is None:
                        return None
                else:
                    t = base + hms
                if t < lo or t > hi:  # outside the accepted dates: rejected on the general path
                    return None
                iid = o.get("id")
                if type(iid) is int:
                    iid = str(iid)
                elif type(iid) is not str or not iid:
                    return None
                if pid:
                    iid = pid(iid)
                leaf = len(o) == 4  # just the four fields read above: no parent link, no replies
                if iid in seen or (not leaf and "parent" in o) or d >= 1024:
                    return None
                seen.add(iid)
                n_all += 1
                if profs is not None and s_uid not in tried:
                    pend.append((s_uid, u))
                if ptime is None:      # below an item dropped after the window: dropped too
                    n_drop += 1
                    ct = None
                elif t < ptime:        # before its parent: rejected
                    return None
                elif t > end:          # after the window: dropped, with everything below it
                    n_drop += 1
                    ct = None
                else:
                    keys.append(t * 1024 + d)
                    nodes.append({"id": iid, "user": s_uid, "action": action, "text": text, "time": t, "parent": par,
                                  "depth": d})
                    ct = t
                if leaf:
                    continue
                # nested replies, walked before the next sibling: comments, replies, reposts
                subs = None
                for key, act in (("reposts", "repost"), ("replies", "comment"), ("comments", "comment")):
                    sub = o.get(key)
                    if sub is not None:
                        if type(sub) is not list:
                            return None
                        if sub:
                            if subs is None:
                                subs = [(it, action, par, ptime, d)]  # the siblings left, after these
                            subs.append((iter(sub), act, iid, ct, d + 1))
                if subs:
                    stack += subs
                    break
        # the same tree as make_tree: nodes sorted by (time, depth), stable
        if len(nodes) > 1:
            order = sorted(range(len(nodes)), key=keys.__getitem__)
            nodes = [nodes[k] for k in order]
        for uid, u in pend:
            if uid not in tried:
                self._profile_from_user(uid, u, profs)
        self.c["interactions_in"] += n_all
        batch = self.batch
        b_users, b_times, b_kinds, b_texts = batch.users, batch.times, batch.kinds, batch.texts
        b_users.append(ruid)
        b_times.append(t0)
        b_kinds.append(0)
        b_texts.append(rtext)
        for n in nodes:
            b_users.append(n["user"])
            b_times.append(n["time"])
            b_kinds.append(1 if n["action"] == "comment" else 2)
            b_texts.append(n["text"])
        nodes.insert(0, {"id": rid, "user": ruid, "action": "post", "text": rtext, "time": t0, "parent": None,
                         "depth": 0})
        rec = {"root_id": rid, "source": "weibo", "file": file, "line": line, "root_time": t0,
               "window_end": end, "n_dropped_window": n_drop, "nodes": nodes}
        n0 = len(batch.blob)
        batch.blob += orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE)
        return rid, [], len(batch.blob) - n0, len(nodes), len(nodes) - 1, n_drop, t0

    def add_line(self, file: str, line: int, raw: bytes) -> tuple:
        """``(rejects [(file, line, reason, field, record)], embedded profiles, number of
        items checked, made tree or None)`` for one line (the tree itself goes to ``self.batch``)."""
        c = self.c
        c["posts_in"] += 1
        rej: list[tuple] = []
        try:
            obj = decode_json_line(raw)
            if not isinstance(obj, dict):
                raise _Reject(R_WRONG_TYPE, None, f"a post must be a JSON object, got {type(obj).__name__}")
            rid = _get_id(obj, "post")
            if rid is None:
                raise _Reject(R_MISSING, "id")
            if self.pid:
                rid = self.pid(rid)
            u = obj.get("user")
            uid = _get_uid(u, "user", self.canon)
            raw_uid = u.get("id", u.get("idstr"))
            if type(raw_uid) is int or type(raw_uid) is str:  # one str object per user (see _fast_tree)
                uid = self._uids.setdefault(raw_uid, uid)
            text = _get_text(obj, "post", required=True)
            t0 = _get_time(obj, "post", self.tz, self.dates)
            self._names = self._post_names(obj) if self.mentions is not None else None
            text = self._scrub(text)
            for key in ("comments", "reposts"):
                if key in obj and obj[key] is not None and not isinstance(obj[key], list):
                    raise _Reject(R_WRONG_TYPE, key, f"expected a list, got {type(obj[key]).__name__}")
        except _Reject as r:
            fld = r.field.replace("post.", "") if r.field else None
            c["posts_rejected"] += 1
            # the raw line holds raw user ids: not copied when they are pseudonymised
            rej.append((file, line, _reason(r.reason, r.detail), fld,
                        None if self.pz else raw[:300].decode("utf-8", "replace")))
            if r.reason not in (R_BAD_JSON, R_BAD_ENCODING):
                n = _count_nested(obj)
                c["interactions_in"] += n
                c["interactions_rejected_with_post"] += n
            return rej, None, 0, None
        profs: list | None = None
        if self.embedded:
            profs = []
            if uid not in self.tried:
                self._profile_from_user(uid, u, profs)
        counted = dict(self.mentions.counts) if self.mentions is not None else None
        made = self._fast_tree(file, line, obj, rid, uid, text, t0, profs)
        if made is not None:
            return rej, profs, made[4] + made[5], made
        if counted is not None:  # the general path scrubs the texts again: count them once
            self.mentions.counts = counted
        items: list[Item] = []
        counter = [0, 0]
        self._items(obj.get("comments"), "comments", None, 0, "comment", rid, line, items, file, counter, rej, profs)
        self._items(obj.get("reposts"), "reposts", None, 0, "repost", rid, line, items, file, counter, rej, profs)
        c["interactions_in"] += counter[0]
        c["interactions_rejected"] += len(rej)
        made = make_tree(file, line, {"id": rid, "user": uid, "text": text, "time": t0}, items, "weibo", self.window,
                         self.batch)
        return rej, profs, len(items), made


def read_chunk(chunk: tuple[str, int, int, int]) -> list[tuple[int, bytes]]:
    """The non-blank lines of a :func:`line_chunks` piece as ``(line number, bytes)``
    (numbers count blank lines too); bytes, so that a bad encoding is rejected per line
    instead of failing the whole file."""
    path, off, length, no = chunk
    with open(path, "rb") as fh:
        fh.seek(off)
        data = fh.read(length)
    out = []
    for raw in io.BytesIO(data):
        if not raw.isspace():  # = raw.strip() for a non-empty line, without copying it
            out.append((no, raw))
        no += 1
    return out


def parse_lines(parser: WeiboParser, chunk: tuple[str, int, int, int]) -> tuple[str, list, Counter, TreeBatch]:
    """One :func:`line_chunks` piece of a JSON-lines file -> ``(path, [(line number,
    WeiboParser.add_line result), ...], parse-time counts, trees)`` for
    :meth:`TreeBuilder.record_chunk`."""
    path = chunk[0]
    add = parser.add_line
    posts = [(no, add(path, no, raw)) for no, raw in read_chunk(chunk)]
    return (path, posts, *parser.take())


CHUNK_BYTES = 1 << 20  # input is split into pieces of about this size (the unit of work of a worker)


def line_chunks(path: str, chunk_bytes: int | None = None) -> Iterator[tuple[str, int, int, int]]:
    """``(path, offset, length, first line number)`` pieces of about ``chunk_bytes``
    (default :data:`CHUNK_BYTES`) that end at a line end (a longer line is one piece of its
    own length). Only newlines are looked at here: whoever parses a piece reads its bytes."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    with open(path, "rb") as fh:
        off, no = 0, 1
        pending = 0  # bytes after `off` with no newline yet
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                if pending:
                    yield path, off, pending, no
                return
            cut = block.rfind(b"\n")
            if cut < 0:
                pending += len(block)
                continue
            length = pending + cut + 1
            yield path, off, length, no
            no += block.count(b"\n", 0, cut + 1)
            off += length
            pending = len(block) - cut - 1


def load_json_file(path: str | os.PathLike, what: str) -> Any:
    require_input_file(path, f"{what} file")
    try:
        return orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as e:
        raise DataError(path, getattr(e, "lineno", None), None, f"{what} is not valid JSON: {e}") from None


def load_profiles(path: str, users: UserIndex, rejects: RejectLog, counts: Counter,
                  canon: Callable[[str], str] | None = None, pz: Callable[[str], str] | None = None,
                  mentions: MentionScrubber | None = None) -> None:
    """Profile JSON: ``{user_id: {...}}`` or ``[{"id": ..., ...}, ...]``; bad entries rejected.
    ``mentions``: learns every profile's name first (``known``), then rewrites the @mentions
    of the descriptions."""
    data = load_json_file(path, "profile")
    if isinstance(data, dict):
        entries = list(data.items())
    elif isinstance(data, list):
        entries = [(e.get("id") if isinstance(e, dict) else None, e) for e in data]
    else:
        raise DataError(path, None, None, "profile JSON must be an object (id -> profile) or a list")
    if mentions is not None:
        for uid, p in entries:
            if isinstance(p, dict) and isinstance(uid, (str, int)) and not isinstance(uid, bool) and uid != "":
                add_name(mentions.known, p.get("screen_name", p.get("name")), canon(str(uid)) if canon else str(uid))
    for k, (uid, p) in enumerate(entries, 1):
        counts["profiles_in"] += 1
        try:
            if uid is None or uid == "" or isinstance(uid, bool):
                raise _Reject(R_MISSING, "id")
            uid = canon(str(uid)) if canon else str(uid)
            prof = normalize_profile(uid, p, "profile_json", pz, mentions)
        except _Reject as r:
            counts["profiles_rejected"] += 1
            rejects.reject(path, k, f"{r.reason}: {r.detail}" if r.detail else r.reason, field=r.field)
            continue
        users.set_profile(uid, prof, overwrite=True)
        counts["profiles_out"] += 1


def load_id_map(path: str) -> dict[str, str]:
    """``{raw user id: canonical id}``; each canonical id a non-empty string or an integer (a
    DataError names the first other one by its position, not by the raw id it maps)."""
    data = load_json_file(path, "id map")
    if not isinstance(data, dict):
        raise DataError(path, None, None, "id map must be a JSON object {raw id: canonical id}")
    for k, (raw, v) in enumerate(data.items(), 1):
        if isinstance(v, bool) or not isinstance(v, (str, int)) or not str(v).strip() or not raw.strip():
            what = "its raw id is empty" if not raw.strip() else f"the canonical id is {_kind(v)}"
            raise DataError(path, None, f"entry {k}", f"{what}; each entry must map a raw id to a non-empty string "
                                                      f"or an integer")
    return {k: str(v) for k, v in data.items()}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return "an empty string" if not v else "blank"
    return {bool: "a boolean", list: "a list", dict: "an object", float: "a number with a fraction"}.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------- CED

def ced_files(ced_dir: str | os.PathLike, limit: int | None = None) -> list[tuple[Path, Path | None]]:
    """(root file, list file or None) pairs, sorted by file name."""
    d = Path(ced_dir)
    roots = sorted((d / "original-microblog").glob("*.json"), key=lambda p: p.name)
    if not roots:
        raise DataError(d, None, None, "no original-microblog/*.json files (is this a weibo-ced folder?)")
    if limit:
        roots = roots[:limit]
    out = []
    for r in roots:
        lst = None
        for sub in ("rumor-repost", "non-rumor-repost"):
            if (d / sub / r.name).is_file():
                lst = d / sub / r.name
        out.append((r, lst))
    return out


def ced_lists_without_root(ced_dir: str | os.PathLike) -> list[Path]:
    """Repost lists that have no root file (their items belong to no cascade)."""
    d = Path(ced_dir)
    roots = {p.name for p in (d / "original-microblog").glob("*.json")}
    return sorted((p for sub in ("rumor-repost", "non-rumor-repost") for p in (d / sub).glob("*.json")
                   if p.name not in roots), key=lambda p: p.name)


def _ced_shown(path: Path, canon: Callable[[str], str] | None, pid: Callable[[str], str] | None = None) -> str:
    """The path as written into outputs: the author id in ``<index>_<mid>_<uid>.json`` goes
    through the id map / pseudonymizer like every other user id, and the mid through the
    post pseudonymizer when there is one. With pseudonyms the public file index is left out
    (``<p_mid>_<u_uid>.json``): it names the file of the public dataset, so it would lead back
    to the raw mid and uid. Without them, a name not of that form is shown as it is."""
    parts = path.stem.split("_")
    if pid is not None:
        if len(parts) < 3:  # not of the CED form: nothing in it can be told apart from an id
            return str(path.with_name(pid(path.stem) + path.suffix))
        return str(path.with_name(f"{pid(parts[-2])}_{canon(parts[-1]) if canon else parts[-1]}{path.suffix}"))
    if canon is None or len(parts) < 3:
        return str(path)
    return str(path.with_name("_".join(parts[:-2] + [parts[-2], canon(parts[-1])]) + path.suffix))


def _read_ced_list(b: TreeBuilder, list_file: Path, shown: str) -> list | None:
    """The items of a repost list; None for a list not readable as a whole (rejected and counted)."""
    try:
        lst = decode_json_line(list_file.read_bytes())
        if not isinstance(lst, list):
            raise _Reject(R_WRONG_TYPE, None, "repost file must hold a JSON list")
        return lst
    except _Reject as r:  # the whole list is unreadable: its items cannot be counted
        b.c["list_files_rejected"] += 1
        b.rejects.reject(shown, None, f"{r.reason}: {r.detail}" if r.detail else r.reason, field=r.field)
        return None


def add_ced_cascade(b: TreeBuilder, root_file: Path, list_file: Path | None, tz: int,
                    dates: DateRange | None = None) -> None:
    """One CED cascade. Root author: profile from the root's ``user`` object; the id and
    the root's mid come from the file name ``<index>_<mid>_<uid>.json``."""
    b.c["posts_in"] += 1
    dates = dates or default_dates()
    canon, pid = b.canon, getattr(b.pz, "post", None)
    f = _ced_shown(root_file, canon, pid)
    lf = _ced_shown(list_file, canon, pid) if list_file is not None else None
    try:
        parts = root_file.stem.split("_")
        if len(parts) < 3:
            raise _Reject(R_MISSING, "file name", "expected <index>_<mid>_<uid>.json")
        rid, uid = parts[-2], canon(parts[-1]) if canon else parts[-1]
        if pid:
            rid = pid(rid)
        raw = root_file.read_bytes()
        obj = decode_json_line(raw)
        if not isinstance(obj, dict):
            raise _Reject(R_WRONG_TYPE, None, "root file must hold a JSON object")
        text = obj.get("text")
        if text is None:
            raise _Reject(R_MISSING, "text")
        if not isinstance(text, str):
            raise _Reject(R_WRONG_TYPE, "text")
        if is_mojibake(text):
            raise _Reject(R_MOJIBAKE, "text")
        text = b.mentions(text) if b.mentions is not None else text
        if "time" not in obj:
            raise _Reject(R_MISSING, "time")
        t0 = _checked_time(obj["time"], "time", tz, dates)
        u = obj.get("user")  # a few files hold the string "empty": the root author then has no profile
    except _Reject as r:
        b.reject_post(f, 1, r.reason, r.field, r.detail)
        if list_file is not None:  # its items go with the post, counted
            n = len(_read_ced_list(b, list_file, lf) or ())
            b.c["interactions_in"] += n
            b.c["interactions_rejected_with_post"] += n
        return
    lst = _read_ced_list(b, list_file, lf) if list_file is not None else []
    if lst is None:  # the list is there but unreadable: who reacted is unknown, not "nobody"
        b.reject_post(f, 1, R_LIST_REJECTED, None, f"its repost list {lf} could not be read, so its reactions are "
                                                   f"unknown")
        return
    if isinstance(u, dict):
        prof = {"source": "ced_root"}
        for key in ("gender", "location", "followers", "friends", "messages", "verified"):
            if key in u and u[key] is not None:
                prof[key] = u[key]
        b.users.set_profile(uid, prof)
    items: list[Item] = []
    for k, o in enumerate(lst, 1):
        b.c["interactions_in"] += 1
        try:
            if not isinstance(o, dict):
                raise _Reject(R_WRONG_TYPE, None, "item must be an object")
            iid, iu, par, txt = o.get("mid"), o.get("uid"), o.get("parent"), o.get("text")
            for name, v in (("mid", iid), ("uid", iu)):
                if v is None or v == "":
                    raise _Reject(R_MISSING, name)
                if isinstance(v, bool) or not isinstance(v, (str, int)):
                    raise _Reject(R_WRONG_TYPE, name)
            if par is None:
                raise _Reject(R_MISSING, "parent")
            if not isinstance(par, (str, int)) or isinstance(par, bool):
                raise _Reject(R_WRONG_TYPE, "parent")
            if txt is None:
                txt = ""
            if not isinstance(txt, str):
                raise _Reject(R_WRONG_TYPE, "text")
            if txt and is_mojibake(txt):
                raise _Reject(R_MOJIBAKE, "text")
            txt = b.mentions(txt) if b.mentions is not None else txt
            if "date" not in o:
                raise _Reject(R_MISSING, "date")
            t = _checked_time(o["date"], "date", tz, dates, t0)
        except _Reject as r:
            b.reject_item(lf, k, r.reason, r.field, r.detail)
            continue
        iu = canon(str(iu)) if canon else str(iu)
        iid, par = str(iid), str(par) if par != "" else None
        if pid:
            iid, par = pid(iid), pid(par) if par is not None else None
        # CED does not tell reposts from comments: text -> comment, no text -> repost
        items.append(Item(iid, iu, "comment" if txt.strip() else "repost", txt, t, par, k, "item"))  # depth: walking
    b.add(lf or f, 1, {"id": rid, "user": uid, "text": text, "time": t0}, items, "ced", extra={"root_file": f})


# --------------------------------------------------------------------------- diffusion cascades

R_ODD_FIELDS = "odd_fields"         # a diffusion pair that is not "<user> <time>"
R_OUT_OF_ORDER = "out_of_order"     # a diffusion time before the previous one
R_USER_TWICE = "user_twice"         # a user twice in one diffusion cascade


def _diffusion_time(tok: str) -> int:
    """Unix seconds written as an integer or a float (``1.284967588e+9``)."""
    try:
        v = float(tok) if any(c in tok for c in ".eE") else int(tok)
    except ValueError:
        raise DateFormatError(f"not a number: {tok[:40]!r}") from None
    if not (0 <= v < 1e11):  # also NaN and inf
        raise DateFormatError(f"not unix seconds: {tok[:40]!r}")
    return int(round(v))


def add_diffusion_file(b: TreeBuilder, path: Path, dates: DateRange) -> None:
    """A who-joins cascade file (``uid timestamp,uid timestamp,...`` a line, in time order,
    the FOREST / MS-HGAT form): the first user is the root author, every later user a
    ``repost`` of the root (depth 1, no text: the data has no parent links and no texts).
    A bad line is rejected whole, with its line and reason."""
    canon, pid = b.canon, getattr(b.pz, "post", None)
    shown = str(path)
    tag = path.parent.name or path.stem
    with open(path, "rb") as fh:
        for no, raw in enumerate(fh, 1):
            line = raw.strip().rstrip(b",")
            if not line:
                continue
            b.c["posts_in"] += 1
            try:
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Reject(R_BAD_ENCODING, None) from None
                parts = text.split(",")
                acts = []
                seen = set()
                for k, part in enumerate(parts, 1):
                    f = part.split()
                    if len(f) != 2:
                        raise _Reject(R_ODD_FIELDS, f"pair {k}", f"{part.strip()[:40]!r} is not '<user> <time>'")
                    try:
                        t = _diffusion_time(f[1])
                    except DateFormatError as e:
                        raise _Reject(R_BAD_DATE, f"pair {k}", str(e)) from None
                    if not dates.holds_time(t):
                        raise _Reject(R_BAD_DATE, f"pair {k}", f"{t} is outside the accepted dates {dates} "
                                                               f"(first_date, last_date)")
                    if acts and t < acts[-1][1]:
                        raise _Reject(R_OUT_OF_ORDER, f"pair {k}", f"{t} is before {acts[-1][1]}")
                    if f[0] in seen:
                        raise _Reject(R_USER_TWICE, f"pair {k}", f"user {f[0][:20]} again")
                    seen.add(f[0])
                    acts.append((f[0], t))
            except _Reject as r:
                b.reject_post(shown, no, r.reason, r.field, r.detail)
                n = line.count(b",")  # the reactions of the line go with it, counted
                b.c["interactions_in"] += n
                b.c["interactions_rejected_with_post"] += n
                continue
            rid = f"{tag}-{no}"
            if pid:
                rid = pid(rid)
            ids = [canon(u) if canon else u for u, _ in acts]
            t0 = acts[0][1]
            items = [Item(f"{rid}.{k}", u, "repost", "", t, None, no, f"pair {k + 1}", depth=1)
                     for k, (u, (_, t)) in enumerate(zip(ids[1:], acts[1:]), 1)]
            b.c["interactions_in"] += len(items)
            b.add(shown, no, {"id": rid, "user": ids[0], "text": "", "time": t0}, items, "diffusion")


# --------------------------------------------------------------------------- pass 1 driver

def _progress(enabled: bool, desc: str, total: int | None = None):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="rec", unit_scale=True, disable=not enabled, mininterval=0.5,
                smoothing=0.1)


def write_user_index(users: UserIndex, root_times: array, out_dir: Path) -> dict:
    """``users.parquet`` (one row per user, row = dense index) and ``activity.npz`` (all
    activity sorted by user then time, with per-user offsets: a CSR layout; each act's
    cascade, i.e. its tree's line in ``trees.jsonl`` minus one, and each cascade's author)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(users.ids)
    u = np.frombuffer(users.act_user, dtype=np.int32) if len(users.act_user) else np.zeros(0, np.int32)
    t = np.frombuffer(users.act_time, dtype=np.int64) if len(users.act_time) else np.zeros(0, np.int64)
    k = np.frombuffer(users.act_kind, dtype=np.int8) if len(users.act_kind) else np.zeros(0, np.int8)
    is_root = k == 0
    cascade = (np.cumsum(is_root) - 1).astype(np.int32)  # acts come tree by tree, root first
    cascade_author = u[is_root].astype(np.int32)         # cascade (tree line) -> its author
    order = np.lexsort((t, u))
    u, t, k, cascade = u[order], t[order], k[order], cascade[order]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n), out=offsets[1:])
    has = offsets[1:] > offsets[:-1]
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    first[has] = t[offsets[:-1][has]]
    last[has] = t[offsets[1:][has] - 1]
    counts = [np.bincount(u[k == code], minlength=n) for code in (0, 1, 2)]
    profiles = [users.profiles.get(i) for i in range(n)]
    early = [orjson.dumps(users.early_texts[i]).decode() if i in users.early_texts else None for i in range(n)]
    table = pa.table({
        "user_id": pa.array(users.ids, pa.string()),
        "first_time": pa.array(first), "last_time": pa.array(last),
        "n_posts": pa.array(counts[0]), "n_comments": pa.array(counts[1]), "n_reposts": pa.array(counts[2]),
        "profile": pa.array(profiles, pa.string()), "early_texts": pa.array(early, pa.string()),
    })
    pq.write_table(table, out_dir / "users.parquet")
    with open(out_dir / "activity.npz", "wb") as fh:
        np.savez(fh, user=u, time=t, kind=k, offsets=offsets, cascade=cascade, cascade_author=cascade_author,
                 root_times=np.frombuffer(root_times, dtype=np.int64) if len(root_times) else np.zeros(0, np.int64))
    return {"users": n, "users_with_profile": len(users.profiles), "users_active": int(has.sum()),
            "activity_records": int(len(u))}


def build_trees(*, inputs: list[str], profiles: str | None, id_map: str | None, ced_dir: str | None,
                ced_limit: int | None, out_dir: str, window_seconds: int, strict: bool, tz_offset: int = 8 * 3600,
                embedded_profiles: bool = True, progress: bool = True, workers: int = 1,
                pseudonymizer=None, dates: DateRange | None = None, scrub_mentions: bool = False,
                diffusion: list[str] = ()) -> dict:
    """Pass 1. Writes ``trees.jsonl``, ``users.parquet``, ``activity.npz``, ``rejects.jsonl``
    and ``summary.json`` into ``out_dir`` atomically (all or nothing). ``pseudonymizer``
    (:class:`simtune.pseudonym.Pseudonymizer`): every user id and screen name goes through it
    as it is read, after the id map, so no output holds a raw one.

    ``workers > 1`` parses and checks chunks of the JSON-lines inputs in that many forked
    processes (which inherit the id map and pseudonymizer); this process records the
    results in line order, so every output is the same as with one worker."""
    import time as _time

    from simtune.io import atomic_path, atomic_write_json
    from simtune.parallel import few_gc_passes, imap_ordered

    t_start = _time.time()
    if not inputs and not ced_dir and not diffusion:
        raise DataError(None, None, "inputs", "nothing to read: give inputs (Weibo JSON lines), ced_dir and/or "
                                              "diffusion (who-joins cascade files)")
    for p in [*inputs, *diffusion]:
        require_input_file(p, "input file")
    out = Path(out_dir)
    with atomic_path(out, is_dir=True, command="data social build") as tmp:
        users = UserIndex()
        counts: Counter = Counter()
        with RejectLog(tmp / "rejects.jsonl", strict=strict) as rejects, open(tmp / "trees.jsonl", "wb") as fh:
            idm = load_id_map(id_map) if id_map else {}
            pz = pseudonymizer
            canon = None  # raw user id -> the id written: id map, then pseudonym
            if pz is not None:
                canon = lambda u: pz(idm.get(u, u))  # noqa: E731
            elif idm:
                canon = lambda u: idm.get(u, u)  # noqa: E731
            mentions = MentionScrubber() if scrub_mentions else None
            if profiles:
                load_profiles(profiles, users, rejects, counts, canon, pz, mentions)
            if mentions is not None:  # the profiles' counts, taken before any worker copies the scrubber
                counts.update(mentions.take_counts())
            b = TreeBuilder(fh, users, rejects, window_seconds, canon, pz, mentions)
            bar = _progress(progress, "build trees")
            dates = dates or default_dates()
            parser = WeiboParser(canon, tz_offset, window_seconds, embedded_profiles, pz, dates, mentions)
            chunks = (ch for path in inputs for ch in line_chunks(str(path)))
            with few_gc_passes():
                for path, posts, parse_counts, batch in imap_ordered(parse_lines, parser, chunks, workers):
                    b.c.update(parse_counts)
                    b.record_chunk(path, posts, batch)
                    bar.update(len(posts))
                if ced_dir:
                    for rf, lf in ced_files(ced_dir, ced_limit):
                        add_ced_cascade(b, rf, lf, tz_offset, dates)
                        bar.update(1)
                    for lf in ced_lists_without_root(ced_dir) if not ced_limit else ():
                        b.c["list_files_rejected"] += 1
                        shown = _ced_shown(lf, canon, getattr(pz, "post", None))
                        rejects.reject(shown, None, f"{R_PARENT_MISSING}: no original-microblog "
                                               f"file for this repost list")
                for path in diffusion:
                    add_diffusion_file(b, Path(path), dates)
            bar.close()
            if mentions is not None:  # CED's (this process's); the workers' came with their counts
                b.c.update(mentions.take_counts())
            counts.update(b.c)
            rej_counts = dict(rejects.counts)
        index_info = write_user_index(users, b.root_times, tmp)
        summary = {
            "command": "data social build",
            "inputs": [str(p) for p in inputs], "profiles": profiles, "id_map": id_map, "ced_dir": ced_dir,
            "diffusion": [str(p) for p in diffusion],
            "window_seconds": window_seconds, "accepted_dates": str(dates),
            "pseudonymized": pz is not None, **({"salt_fingerprint": pz.fingerprint} if pz else {}),
            "mentions": mention_summary(scrub_mentions, counts),
            "counts": {k: counts.get(k, 0) for k in (
                "posts_in", "posts_out", "posts_rejected", "interactions_in", "interactions_out",
                "interactions_rejected", "interactions_rejected_with_post", "list_files_rejected", "profiles_in", "profiles_out",
                "profiles_rejected")},
            "dropped": {"after_window": b.dropped.get("after_window", 0)},
            "rejected_by_reason": rej_counts,
            **index_info,
            "outputs": ["trees.jsonl", "users.parquet", "activity.npz", "rejects.jsonl", "summary.json"],
            "seconds": round(_time.time() - t_start, 3),
        }
        if not (tmp / "rejects.jsonl").exists():
            (tmp / "rejects.jsonl").write_bytes(b"")
        atomic_write_json(tmp / "summary.json", summary)
    return summary
