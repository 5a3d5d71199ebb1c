"""Pass 2: trees -> SFT samples ("who reacts to this node, how, with what text").

One sample per tree node of depth <= ``max_depth`` that has children (after the time
window). The prompt holds the post, the thread down to that node (for deeper levels) and
a shuffled candidate pool: the true interactors plus noise users (``k`` x as many, ``k``
drawn uniformly from the depth's range) who were active strictly before the node's time.
Each candidate line carries a short profile: the user's static profile, else one derived
from their own activity strictly before the node's time (count, earliest texts).

Prompt building lives in :func:`build_prompt` (reused by the simulator for predicted
parents); answers are read back with :func:`parse_answer`.
"""
from __future__ import annotations

import json
import random
from bisect import bisect_left
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import orjson

from simtune.recipes.social.schema import ACTIONS

POST_CHARS = 160      # post text shown in a prompt
CHAIN_CHARS = 80      # each thread message shown for deeper levels
PROFILE_CHARS = 64    # static profile text per candidate
SUBTREE_CAP = 200     # nodes serialized per child in the GRPO `children` column

_VERB = {"comment": "commented", "repost": "reposted", "post": "posted"}


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


ANSWER_LINES = {
    "pool": 'Answer with a JSON list, in candidate order, of {"user": id, "action": "comment" or "repost", '
            '"text": ...} for each candidate who reacts; [] if nobody reacts.',
    "time": 'Answer with a JSON list ordered by time of {"user": id, "action": "comment" or "repost", '
            '"text": ...}; [] if nobody reacts.',
}
ANSWER_ORDERS = tuple(ANSWER_LINES)


def build_prompt(post_text: str, post_author: str, candidates: Sequence[tuple[str, str]],
                 chain: Sequence[dict] = (), post_chars: int = POST_CHARS, chain_chars: int = CHAIN_CHARS,
                 order: str = "pool") -> str:
    """The plain-text instruction for one node.

    ``candidates``: ``(user_id, profile_line)`` in prompt order. ``chain``: the messages
    from the root's direct interactor down to the node being answered (empty at depth
    0), each ``{"user", "action", "text"}``. ``order``: how the answer lists the reactors,
    ``pool`` (in candidate order: the model reads the pool once, top to bottom, deciding
    for each) or ``time`` (in the order they reacted).
    """
    lines = ["Predict which candidates react, and how.",
             f"Post by {post_author}: {_clip(post_text, post_chars) or '(no text)'}"]
    if chain:
        lines.append("Thread:")
        for c in chain:
            lines.append(f"> {c['user']} {_VERB.get(c['action'], c['action'])}: {_clip(c.get('text') or '', chain_chars) or '(no text)'}")
        lines.append("Candidates (reacting to the last message):")
    else:
        lines.append("Candidates:")
    for uid, prof in candidates:
        lines.append(f"{uid}: {prof}")
    lines.append(ANSWER_LINES[order])
    return "\n".join(lines)


def answer_order_of(prompt: str) -> str:
    """``pool`` or ``time``: the order a prompt built by :func:`build_prompt` asks for."""
    last = prompt.rsplit("\n", 1)[-1]
    return next((o for o, line in ANSWER_LINES.items() if last == line), "time")


def format_answer(users: Sequence[str], actions: Sequence[str], texts: Sequence[str]) -> str:
    return orjson.dumps([{"user": u, "action": a, "text": t} for u, a, t in zip(users, actions, texts)]).decode()


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_DECODER = json.JSONDecoder()


def _valid(obj: Any) -> list[dict] | None:
    if not isinstance(obj, list):
        return None
    out = []
    for e in obj:
        if not isinstance(e, dict):
            return None
        u, a, t = e.get("user"), e.get("action"), e.get("text", "")
        if isinstance(u, bool) or not isinstance(u, (str, int)) or (isinstance(u, str) and not u.strip()):
            return None
        if a not in ACTIONS or not isinstance(t, str):
            return None
        out.append({"user": str(u).strip(), "action": a, "text": t})
    return out


def parse_answer(text: Any) -> list[dict] | None:
    """A model's answer -> ``[{"user", "action", "text"}, ...]``, or None when it holds no
    JSON list of that shape. Tolerates surrounding prose and ```json fences; ``text`` may be
    left out (read as ""); ``user`` may be an integer (read as its string)."""
    if not isinstance(text, str):
        return None
    cands = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for c in cands:
        c = c.strip()
        try:
            v = _valid(orjson.loads(c))
            if v is not None:
                return v
        except orjson.JSONDecodeError:
            pass
        start = c.find("[")
        tries = 0
        while start != -1 and tries < 20:
            tries += 1
            try:
                obj, _ = _DECODER.raw_decode(c, start)
                v = _valid(obj)
                if v is not None:
                    return v
            except json.JSONDecodeError:
                pass
            start = c.find("[", start + 1)
    return None


# --------------------------------------------------------------------------- user table

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
            user, time = z["user"], z["time"]
            self.offsets = z["offsets"]
            self.root_times = z["root_times"]
        self.tmin = int(time.min()) if len(time) else 0
        self.keys = (user.astype(np.int64) << 32) | (time - self.tmin)
        active = np.flatnonzero(self.first_time >= 0)
        order = active[np.argsort(self.first_time[active], kind="stable")]
        self.by_first = order.tolist()                 # user idx sorted by first activity
        self.first_sorted = self.first_time[order].tolist()
        self.first_list = self.first_time.tolist()     # plain ints: cheap scalar access
        self._static: dict[int, str | None] = {}

    def first_act_share(self) -> float:
        """Share of all recorded activity that is some user's first (CED: ~1, a platform
        with regulars: small)."""
        n_acts = len(self.keys)
        return float((self.first_time >= 0).sum()) / n_acts if n_acts else 0.0

    def eligible(self, t: int) -> int:
        """How many users were active strictly before ``t`` (they are ``by_first[:n]``)."""
        return bisect_left(self.first_sorted, t)

    def acts_before(self, idx: Sequence[int], t: int) -> np.ndarray:
        """Activity count of each user strictly before ``t`` (vectorized)."""
        ia = np.asarray(idx, dtype=np.int64)
        q = min(max(t - self.tmin, 0), (1 << 32) - 1)
        return np.searchsorted(self.keys, (ia << 32) | q, side="left") - self.offsets[ia]

    def acts_before_many(self, idx: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Activity count of user ``idx[j]`` strictly before ``times[j]``."""
        q = np.clip(times - self.tmin, 0, (1 << 32) - 1)
        return np.searchsorted(self.keys, (idx << 32) | q, side="left") - self.offsets[idx]

    def static_line(self, i: int) -> str | None:
        v = self._static.get(i, 0)
        if v != 0:
            return v
        p = self._profiles[i]
        line = None
        if p:
            d = orjson.loads(p)
            bits = []
            if d.get("interests"):
                bits.append("interests: " + ", ".join(d["interests"]))
            if d.get("description"):
                bits.append(d["description"])
            if not d.get("interests"):
                for k in ("location", "gender"):
                    if d.get(k):
                        bits.append(str(d[k]))
            if "followers" in d and not d.get("interests"):
                bits.append(f"{d['followers']} followers")
            line = _clip("; ".join(bits), PROFILE_CHARS) if bits else None
        self._static[i] = line
        return line

    def profile_line(self, i: int, n_before: int, t: int, history: bool = True) -> str:
        """Static profile if any, else derived from activity strictly before ``t``.
        ``history=False`` leaves out everything taken from the user's activity."""
        s = self._static.get(i, 0)
        if s == 0:
            s = self.static_line(i)
        if not history:
            return s if s is not None else "no profile"
        if s is not None:
            return f"{s}; {n_before} earlier acts"
        bits = [f"no profile; {n_before} earlier acts"]
        e = self._early[i]
        if e:
            prior = [x for x in orjson.loads(e) if x[0] < t]
            if prior:
                bits.append(f"said: {_clip(prior[-1][1], 30)}")
        return "; ".join(bits)

    def profiles_for(self, idx: Sequence[int], t: int) -> list[str]:
        n = self.acts_before(idx, t)
        return [self.profile_line(i, int(c), t) for i, c in zip(idx, n)]


# --------------------------------------------------------------------------- sample rows

def split_cutoffs(root_times: np.ndarray, train: float, val: float, test: float) -> tuple[int, int]:
    """Root-time cut points: train = t < c1, val = c1 <= t < c2, test = t >= c2."""
    if len(root_times) == 0:
        return 0, 0
    s = np.sort(root_times)
    tot = train + val + test
    n = len(s)
    i1 = min(int(round(n * train / tot)), n)
    i2 = min(int(round(n * (train + val) / tot)), n)
    c1 = int(s[i1]) if i1 < n else int(s[-1]) + 1
    c2 = int(s[i2]) if i2 < n else int(s[-1]) + 1
    return c1, c2


def _subtree(nid: str, kids: dict, byid: dict, budget: list[int]) -> dict:
    n = byid[nid]
    out = {"id": nid, "user": n["user"], "action": n["action"], "text": n["text"], "time": n["time"], "children": []}
    for c in kids.get(nid, ()):
        if budget[0] <= 0:
            break
        budget[0] -= 1
        out["children"].append(_subtree(c, kids, byid, budget))
    return out


class SampleMaker:
    """Turns one tree into sample rows (dicts of columns)."""

    def __init__(self, users: UserTable, *, max_depth: int, k_ranges: list[list[float]], max_pool: int,
                 seed: int, cutoffs: tuple[int, int], with_children: bool = True, history: bool = True,
                 order: str = "pool"):
        self.u = users
        self.max_depth = max_depth
        self.k_ranges = k_ranges
        self.max_pool = max_pool
        self.seed = seed  # each tree gets its own RNG from (seed, root id): the same output for any worker count
        self.c1, self.c2 = cutoffs
        self.with_children = with_children
        self.skipped = {"pool_too_large": 0}
        self.noise_short = 0
        self.history = history
        self.order = order
        # candidates with no activity before the sample's time, true vs noise (noise users
        # always have some: a history feature in the prompt can give the true ones away)
        self.no_history = {"true": 0, "true_total": 0, "noise": 0, "noise_total": 0}

    def take_stats(self) -> dict:
        """The counters since the last call (then reset): summed over chunks and workers."""
        st = {"pool_too_large": self.skipped["pool_too_large"], "noise_short": self.noise_short, **self.no_history}
        self.skipped = {"pool_too_large": 0}
        self.noise_short = 0
        self.no_history = dict.fromkeys(self.no_history, 0)
        return st

    def split_of(self, root_time: int) -> str:
        return "train" if root_time < self.c1 else ("val" if root_time < self.c2 else "test")

    def rows(self, tree: dict) -> list[tuple]:
        """Sample rows (tuples in SAMPLE_COLUMNS order) for one tree."""
        nodes = tree["nodes"]
        root = nodes[0]
        kids: dict[str, list[str]] = {}
        byid = {}
        for n in nodes:
            byid[n["id"]] = n
            p = n["parent"]
            if p is not None:
                kids.setdefault(p, []).append(n["id"])
        if not kids:
            return []
        # subtree sizes: nodes are sorted by (time, depth) and a child is never before its
        # parent, so walking them backwards meets every child before its parent
        size = dict.fromkeys(byid, 0)
        for n in reversed(nodes):
            p = n["parent"]
            if p is not None:
                size[p] += size[n["id"]] + 1
        total = max(len(nodes) - 1, 1)
        split = self.split_of(tree["root_time"])
        u = self.u
        rng = random.Random(f"{self.seed}:{tree['root_id']}")
        rnd, uniform = rng.random, rng.uniform
        pos, by_first, first_time = u.pos, u.by_first, u.first_list
        todo = []  # (node, children, cand idx list)
        for n in nodes:
            d = n["depth"]
            if d > self.max_depth:
                continue
            kl = kids.get(n["id"])
            if kl is None:
                continue
            ch = [byid[c] for c in kl]
            true_idx = list(dict.fromkeys(pos[c["user"]] for c in ch))
            lo, hi = self.k_ranges[min(d, len(self.k_ranges) - 1)]
            n_noise = int(round(uniform(lo, hi) * len(true_idx)))
            if len(true_idx) + n_noise > self.max_pool:
                self.skipped["pool_too_large"] += 1
                continue
            t = n["time"]
            cand = true_idx[:]
            if n_noise:
                m = u.eligible(t)
                excl = set(true_idx)
                excl.add(pos[n["user"]])
                avail = m - sum(1 for i in excl if 0 <= first_time[i] < t)
                want = min(n_noise, max(avail, 0))
                if want < n_noise:
                    self.noise_short += 1
                if want > m // 2:  # dense: sample from the explicit list
                    cand += rng.sample([i for i in by_first[:m] if i not in excl], want)
                else:
                    got = 0
                    while got < want:
                        i = by_first[int(rnd() * m)]
                        if i not in excl:
                            excl.add(i)
                            cand.append(i)
                            got += 1
            cand.sort(key=lambda _i: rnd())  # a seeded shuffle, cheaper than random.shuffle
            todo.append((n, ch, cand))
        if not todo:
            return []
        # activity counts before each sample's time, for all candidates of the tree at once
        import numpy as np

        flat = np.fromiter((i for _, _, c in todo for i in c), dtype=np.int64)
        times = np.fromiter((n["time"] for n, _, c in todo for _ in c), dtype=np.int64)
        counts = u.acts_before_many(flat, times).tolist()
        out, j = [], 0
        ids, line_of = u.ids, u.profile_line
        for n, ch, cand in todo:
            t, d = n["time"], n["depth"]
            cand_ids = [ids[i] for i in cand]
            hist = self.history
            profs = [line_of(i, counts[j + k], t, hist) for k, i in enumerate(cand)]
            true_set = {c["user"] for c in ch}
            n_true = len(true_set)
            nh = self.no_history
            zero_true = sum(1 for k, i in enumerate(cand) if counts[j + k] == 0 and ids[i] in true_set)
            nh["true"] += zero_true
            nh["true_total"] += n_true
            nh["noise"] += sum(1 for k in range(len(cand)) if counts[j + k] == 0) - zero_true
            nh["noise_total"] += len(cand) - n_true
            j += len(cand)
            chain = []
            if d > 0:
                x = n
                while x["parent"] is not None:
                    chain.append(x)
                    x = byid[x["parent"]]
                chain.reverse()
            prompt = build_prompt(root["text"], root["user"], list(zip(cand_ids, profs)), chain, order=self.order)
            true_users = [c["user"] for c in ch]
            actions = [c["action"] for c in ch]
            texts = [c["text"] for c in ch]
            if self.order == "pool":  # the answer lists reactors as the pool does (stable: a user's acts keep their time order)
                at = {uid: k for k, uid in enumerate(cand_ids)}
                ans = sorted(zip(true_users, actions, texts), key=lambda x: at[x[0]])
                answer = format_answer([a[0] for a in ans], [a[1] for a in ans], [a[2] for a in ans])
            else:
                answer = format_answer(true_users, actions, texts)
            children = ""
            if self.with_children:
                budget = [SUBTREE_CAP]
                children = orjson.dumps([_subtree(c["id"], kids, byid, budget) for c in ch]).decode()
            out.append((f"{tree['root_id']}:{n['id']}", tree["root_id"], n["id"], n["user"], d, split, t,
                        tree["root_time"], prompt, answer, cand_ids, true_users,
                        actions, texts, len(cand_ids), size[n["id"]] / total, size[n["id"]], children))
        return out


TREE_ERRORS = (orjson.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError, ValueError)


def process_chunk(maker: SampleMaker, chunk: list[tuple[int, bytes]]) -> tuple[list[tuple], list[tuple[int, str]], dict]:
    """Tree lines -> (sample rows, [(line, reason)] for bad lines, counters)."""
    rows: list[tuple] = []
    bad: list[tuple[int, str]] = []
    for no, raw in chunk:
        try:
            r = maker.rows(orjson.loads(raw))
        except TREE_ERRORS as e:
            bad.append((no, f"bad_tree: {type(e).__name__}: {str(e)[:100]}"))
            continue
        rows.extend(r)
    return rows, bad, {**maker.take_stats(), "n_trees": len(chunk)}


_WORKER_MAKER: SampleMaker | None = None  # set in the parent before forking workers


def _worker_chunk(chunk):
    return process_chunk(_WORKER_MAKER, chunk)


def iter_chunk_results(maker: SampleMaker, chunks, workers: int):
    """``process_chunk`` over ``chunks``, in order; with ``workers > 1`` in forked processes
    that share the (read-only) user table."""
    global _WORKER_MAKER
    if workers <= 1:
        for ch in chunks:
            yield process_chunk(maker, ch)
        return
    import multiprocessing as mp

    _WORKER_MAKER = maker
    pool = mp.get_context("fork").Pool(workers)
    try:
        yield from pool.imap(_worker_chunk, chunks, chunksize=1)
    finally:
        pool.terminate()
        pool.join()
        _WORKER_MAKER = None


SAMPLE_COLUMNS = ["sample_id", "root_id", "node_id", "node_user", "depth", "split", "time", "root_time", "prompt", "response",
                  "candidates", "true_users", "true_actions", "true_texts", "n_candidates", "root_potential",
                  "subtree_size", "children"]


SPLIT_COL = SAMPLE_COLUMNS.index("split")
DEPTH_COL = SAMPLE_COLUMNS.index("depth")
PROMPT_COL = SAMPLE_COLUMNS.index("prompt")


def sample_schema():
    import pyarrow as pa

    s, ls = pa.string(), pa.list_(pa.string())
    return pa.schema([("sample_id", s), ("root_id", s), ("node_id", s), ("node_user", s), ("depth", pa.int32()), ("split", s),
                      ("time", pa.int64()), ("root_time", pa.int64()), ("prompt", s), ("response", s),
                      ("candidates", ls), ("true_users", ls), ("true_actions", ls), ("true_texts", ls),
                      ("n_candidates", pa.int32()), ("root_potential", pa.float64()), ("subtree_size", pa.int32()),
                      ("children", s)])


def row_dict(row: tuple) -> dict:
    return dict(zip(SAMPLE_COLUMNS, row))


class SplitWriters:
    """One Parquet file per split, written in row groups of ``rows_per_group``; rows are
    tuples in :data:`SAMPLE_COLUMNS` order."""

    def __init__(self, out_dir: Path, splits: Sequence[str], rows_per_group: int = 5000):
        import pyarrow.parquet as pq

        self.schema = sample_schema()
        self.w = {s: pq.ParquetWriter(out_dir / f"{s}.parquet", self.schema, compression="zstd") for s in splits}
        self.buf: dict[str, list[tuple]] = {s: [] for s in splits}
        self.n = dict.fromkeys(splits, 0)
        self.rows_per_group = rows_per_group

    def add(self, row: tuple) -> None:
        s = row[SPLIT_COL]
        b = self.buf[s]
        b.append(row)
        self.n[s] += 1
        if len(b) >= self.rows_per_group:
            self.flush(s)

    def flush(self, s: str) -> None:
        import pyarrow as pa

        b = self.buf[s]
        if b:
            cols = list(zip(*b))
            self.w[s].write_table(pa.table({c: list(v) for c, v in zip(SAMPLE_COLUMNS, cols)}, schema=self.schema))
            self.buf[s] = []

    def close(self) -> None:
        for s in self.w:
            self.flush(s)
            self.w[s].close()
