"""The per-user index a build wrote (``users.parquet``, ``activity.npz``), as the samples,
baselines, proposer and simulator read it: ids, static profiles, and each user's acts
strictly before a time (counts, earliest texts, behaviour towards the users present)."""
from __future__ import annotations

from bisect import bisect_left
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import orjson

from simtune.recipes.social.prompt import Behaviour, candidate_line, static_line


class UserTable:
    """The per-user index written by ``build``: ids, static profiles, activity (CSR)."""

    def __init__(self, build_dir: str | Path):
        import pyarrow.parquet as pq

        d = Path(build_dir)
        t = pq.read_table(d / "users.parquet", columns=["user_id", "first_time", "profile", "early_texts"])
        self.ids: list[str] = t.column("user_id").to_pylist()
        self.pos = {u: i for i, u in enumerate(self.ids)}
        self._profiles = t.column("profile").to_pylist()
        self._early = t.column("early_texts").to_pylist()
        self.first_time = t.column("first_time").to_numpy()
        with np.load(d / "activity.npz") as z:
            self.time = z["time"]        # activity times, sorted by user then time
            self.offsets = z["offsets"]  # user i: self.time[offsets[i]:offsets[i + 1]]
            self.root_times = z["root_times"]
            # each act's cascade and each cascade's author (builds before these were written: None)
            self.cascade = z["cascade"] if "cascade" in z.files else None
            self.cascade_author = z["cascade_author"] if "cascade_author" in z.files else None
        active = np.flatnonzero(self.first_time >= 0)
        order = active[np.argsort(self.first_time[active], kind="stable")]
        self.by_first = order.tolist()                 # user idx sorted by first activity
        self.first_sorted = self.first_time[order].tolist()
        self.first_list = self.first_time.tolist()     # plain ints: cheap scalar access
        self._static: dict[int, str | None] = {}

    def first_act_share(self) -> float:
        """Share of all recorded activity that is some user's first (CED: ~1, a platform
        with regulars: small)."""
        n_acts = len(self.time)
        return float((self.first_time >= 0).sum()) / n_acts if n_acts else 0.0

    def eligible(self, t: int) -> int:
        """How many users were active strictly before ``t`` (they are ``by_first[:n]``)."""
        return bisect_left(self.first_sorted, t)

    def acts_before(self, idx: Sequence[int], t: int) -> np.ndarray:
        """Activity count of each user strictly before ``t`` (vectorized)."""
        ia = np.asarray(idx, dtype=np.int64)
        return self.acts_before_many(ia, np.full(len(ia), t, dtype=np.int64))

    def acts_before_many(self, idx: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Activity count of user ``idx[j]`` strictly before ``times[j]``.

        A binary search inside each user's own (short) run of times, all queries at once:
        a search over the whole activity array would touch a new cache line at almost
        every step once it outgrows the CPU caches (tens of millions of records)."""
        lo = self.offsets[idx]
        hi = self.offsets[idx + 1]
        start = lo
        t = np.asarray(times, dtype=np.int64)
        time, last = self.time, len(self.time) - 1
        while True:
            live = lo < hi
            if not live.any():
                return lo - start
            mid = (lo + hi) >> 1
            below = live & (time[np.minimum(mid, last)] < t)
            lo = np.where(below, mid + 1, lo)
            hi = np.where(live & ~below, mid, hi)

    def static_line(self, i: int) -> str | None:
        v = self._static.get(i, 0)
        if v == 0:
            p = self._profiles[i]
            v = self._static[i] = static_line(orjson.loads(p)) if p else None
        return v

    def present(self, users: Sequence[str], t: int) -> "Present":
        """The users present in a thread at time ``t`` (the post's author first, then the
        thread's), with the cascades each acted in strictly before ``t``."""
        idx = [self.pos.get(u, -1) for u in users]
        known = [i for i in idx if i >= 0]
        n = self.acts_before(known, t).tolist() if known else []
        cas = self.cascade
        sets = [set(cas[self.offsets[i]:self.offsets[i] + c].tolist()) for i, c in zip(known, n)] if cas is not None else []
        return Present(idx[0] if idx else -1, len(users), sets, set().union(*sets))

    def behaviour(self, i: int, n_before: int, t: int, present: "Present") -> Behaviour | None:
        """User ``i``'s :class:`~simtune.recipes.social.prompt.Behaviour` from its ``n_before``
        acts strictly before ``t`` (None without acts or without cascade data)."""
        if not n_before or self.cascade is None:
            return None
        o = int(self.offsets[i])
        mine = self.cascade[o:o + n_before]
        author = 0
        if present.author >= 0:
            author = len(set(mine[self.cascade_author[mine] == present.author].tolist()))
        ms = set(mine.tolist())
        alongside = sum(1 for c in present.cascades if not ms.isdisjoint(c))
        shared = len(ms & present.union)
        return Behaviour((t - int(self.time[o + n_before - 1])) / 86400, author, alongside, present.n, shared)

    def profile_line(self, i: int, n_before: int, t: int, history: bool = True,
                     present: "Present | None" = None) -> str:
        """The candidate line (:func:`~simtune.recipes.social.prompt.candidate_line`) of user
        ``i`` at time ``t``, with ``n_before`` acts before it; ``history=False`` leaves out
        everything taken from the user's activity; ``present`` (:meth:`present`): who is in
        the thread, for a profile-less user's behaviour."""
        s = self.static_line(i)
        if not history:
            return candidate_line(s)
        said = beh = None
        e = self._early[i]
        if s is None and e:
            prior = [x for x in orjson.loads(e) if x[0] < t]
            said = prior[-1][1] if prior else None
        if s is None and present is not None:
            beh = self.behaviour(i, n_before, t, present)
        return candidate_line(s, n_before, said, beh)


class Present(NamedTuple):
    author: int              # user index of the post's author (-1: not in the build)
    n: int                   # users present: the author and the thread's
    cascades: list[set]      # per present user known to the build: the cascades they acted in before
    union: set               # all of those cascades


