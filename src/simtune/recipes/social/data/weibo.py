"""Weibo API JSON lines (one post per line, nested comments and reposts, or a flat ``parent``
form), read in chunks of lines that forked workers can parse."""
from __future__ import annotations

import io
from collections import Counter
from typing import Any, Callable, Iterator

import orjson

from simtune.io import DateRange
from simtune.pseudonym import MentionScrubber, add_name
from simtune.recipes.social.data.records import Reject, decode_json_line, default_dates
from simtune.recipes.social.data.trees import Item, TreeBatch, make_tree, reject_reason
from simtune.recipes.social.data.users import normalize_profile
from simtune.recipes.social.schema import (
    _BASE_CACHE, _HMS_CACHE, R_BAD_DATE, R_BAD_ENCODING, R_BAD_JSON, R_MISSING, R_MOJIBAKE, R_ORPHAN, R_WRONG_TYPE,
    DateFormatError, _fast_time, is_mojibake, parse_time,
)


def _get_uid(u: Any, fld: str, canon: Callable[[str], str] | None) -> str:
    if u is None:
        raise Reject(R_MISSING, fld)
    if not isinstance(u, dict):
        raise Reject(R_WRONG_TYPE, fld, f"expected an object, got {type(u).__name__}")
    uid = u.get("id", u.get("idstr"))
    if uid is None or uid == "":
        raise Reject(R_MISSING, fld + ".id")
    if isinstance(uid, bool) or not isinstance(uid, (int, str)):
        raise Reject(R_WRONG_TYPE, fld + ".id", f"expected a string or integer, got {type(uid).__name__}")
    uid = str(uid)
    return canon(uid) if canon else uid


def _get_text(o: dict, fld: str, required: bool) -> str:
    t = o.get("text_raw")
    if t is None:
        t = o.get("text")
    if t is None:
        if required:
            raise Reject(R_MISSING, fld + ".text_raw")
        return ""
    if not isinstance(t, str):
        raise Reject(R_WRONG_TYPE, fld + ".text_raw", f"expected a string, got {type(t).__name__}")
    if t and not t.isascii() and is_mojibake(t):
        raise Reject(R_MOJIBAKE, fld + ".text_raw", "text looks like mis-decoded UTF-8")
    return t


def _get_time(o: dict, fld: str, tz: int, dates: DateRange, ref: int | None = None) -> int:
    v = o.get("created_at")
    if v is None:
        raise Reject(R_MISSING, fld + ".created_at")
    return checked_time(v, fld + ".created_at", tz, dates, ref)


def checked_time(v: Any, fld: str, tz: int, dates: DateRange, ref: int | None = None) -> int:
    """A date field as unix seconds: in a known form (:func:`parse_time`) and inside ``dates``
    (the corpus's accepted range); otherwise a ``bad_date`` reject naming ``fld``."""
    try:
        t = parse_time(v, tz, ref)
    except DateFormatError as e:
        raise Reject(R_BAD_DATE, fld, str(e)) from None
    if not dates.holds_time(t):
        raise Reject(R_BAD_DATE, fld, f"{str(v)[:40]} is outside the accepted dates {dates} (first_date, last_date)")
    return t


def _get_id(o: dict, fld: str) -> str | None:
    v = o.get("id", o.get("mid", o.get("idstr")))
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise Reject(R_WRONG_TYPE, fld + ".id", f"expected a string or integer, got {type(v).__name__}")
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
            except Reject:
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
            raise Reject(R_WRONG_TYPE, fld, f"expected a list, got {type(lst).__name__}")
        canon, tz, pid, dates = self.canon, self.tz, self.pid, self.dates
        lo, hi = dates.lo, dates.hi
        scrub, names = self.mentions, self._names
        depth = pdepth + 1
        counter[0] += len(lst)
        for k, o in enumerate(lst):
            try:
                if type(o) is not dict:
                    raise Reject(R_WRONG_TYPE, f"{fld}[{k}]", f"expected an object, got {type(o).__name__}")
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
                        raise Reject(R_WRONG_TYPE, f"{fld}[{k}].parent")
                    p, d, pi = str(o["parent"]), 0, None
                    if pid:
                        p = pid(p)
            except Reject as r:
                rej.append((file, line, reject_reason(r.reason, r.detail), r.field, None))
                n = _count_nested(o)
                counter[0] += n
                for _ in range(n):
                    rej.append((file, line, reject_reason(R_ORPHAN, "an ancestor was rejected"), f"{fld}[{k}]", None))
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
                        rej.append((file, line, reject_reason(R_WRONG_TYPE, f"expected a list, got {type(sub).__name__}"),
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
                raise Reject(R_WRONG_TYPE, None, f"a post must be a JSON object, got {type(obj).__name__}")
            rid = _get_id(obj, "post")
            if rid is None:
                raise Reject(R_MISSING, "id")
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
                    raise Reject(R_WRONG_TYPE, key, f"expected a list, got {type(obj[key]).__name__}")
        except Reject as r:
            fld = r.field.replace("post.", "") if r.field else None
            c["posts_rejected"] += 1
            # the raw line holds raw user ids: not copied when they are pseudonymised
            rej.append((file, line, reject_reason(r.reason, r.detail), fld,
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
