"""Users: the index of every user seen (dense ids, activity, profiles), profile and id-map
files, and the user index written beside the trees (``users.parquet``, ``activity.npz``)."""
from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from simtune.io import DataError, RejectLog
from simtune.pseudonym import MentionScrubber, add_name
from simtune.recipes.social.data.records import EARLY_TEXTS_PER_USER, EARLY_TEXT_CHARS, Reject, kind_of, load_json_file
from simtune.recipes.social.schema import R_MISSING, R_MOJIBAKE, R_WRONG_TYPE, is_mojibake


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
        raise Reject(R_WRONG_TYPE, "profile", f"profile of {uid} is {type(p).__name__}, not an object")
    out: dict[str, Any] = {"source": source}
    name = p.get("screen_name", p.get("name"))
    if isinstance(name, str) and name:
        out["screen_name"] = pz(name) if pz else name
    interests = p.get("interests")
    if isinstance(interests, str):
        interests = [s.strip() for s in interests.replace("，", ",").split(",") if s.strip()]
    if interests is not None:
        if not isinstance(interests, list) or not all(isinstance(s, str) for s in interests):
            raise Reject(R_WRONG_TYPE, "interests", "interests must be a list of strings")
        out["interests"] = interests
    for key in ("description", "location", "gender", "style"):
        v = p.get(key)
        if isinstance(v, str) and v:
            if is_mojibake(v):
                raise Reject(R_MOJIBAKE, key)
            out[key] = scrub(v) if scrub and key == "description" else v
    for key, alias in (("followers", "followers_count"), ("friends", "friends_count"),
                       ("messages", "statuses_count")):
        v = p.get(key, p.get(alias))
        if isinstance(v, int) and not isinstance(v, bool):
            out[key] = v
    if isinstance(p.get("verified"), bool):
        out["verified"] = p["verified"]
    return out


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
                raise Reject(R_MISSING, "id")
            uid = canon(str(uid)) if canon else str(uid)
            prof = normalize_profile(uid, p, "profile_json", pz, mentions)
        except Reject as r:
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
            what = "its raw id is empty" if not raw.strip() else f"the canonical id is {kind_of(v)}"
            raise DataError(path, None, f"entry {k}", f"{what}; each entry must map a raw id to a non-empty string "
                                                      f"or an integer")
    return {k: str(v) for k, v in data.items()}


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
