"""Pass 2: trees -> SFT samples ("who reacts to this node, how, with what text").

One sample per tree node of depth <= ``max_depth`` that has children (after the time
window), and, with ``leaf_share`` > 0, that share of the nodes without children, whose
answer is ``[]`` (their pools: noise users as for one reactor). The prompt holds the post, the thread down to that node (for deeper levels) and
a shuffled candidate pool: the true interactors plus noise users (``k`` x as many, ``k``
drawn uniformly from the depth's range) who were active strictly before the node's time.
Each candidate line carries a short profile: the user's static profile, else one derived
from their own activity strictly before the node's time (count, earliest texts).

The prompt and answer formats live in :mod:`simtune.recipes.social.prompt`; :meth:`SampleMaker.emit`
assembles the same prompt from bytes made once per tree or user (tests check that it equals
``build_prompt`` of the same parts).
"""
from __future__ import annotations

import random
from bisect import bisect_left
from typing import NamedTuple

import numpy as np
import orjson

from simtune.recipes.social.prompt import (ANSWER_LINES, CANDIDATES, CANDIDATES_THREAD, FIRST_LINE, POST_CHARS,
                                           POST_PREFIX, SAID_CHARS, behaviour_text, clip, thread_line)

from simtune.recipes.social.sample_files import sample_schema
from simtune.recipes.social.tree_lines import DEEP_LEVELS, BadTree, index_tree, subtree_json
from simtune.recipes.social.user_table import Present, UserTable

SUBTREE_CAP = 200     # nodes serialized per child in the GRPO `children` column

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


class NodePlan(NamedTuple):
    """One sample of a tree, its draws made and no text written yet."""
    node: dict
    children: list          # the node's kept child nodes (they make the answer)
    candidates: list        # the pool: user indices (the true ones and noise), shuffled
    true_idx: list          # the children's users' indices
    child_user_idx: list
    child_users: list
    actions: list
    texts: list


class TreePlan(NamedTuple):
    """The samples of one tree before any text (:meth:`SampleMaker.plan`)."""
    tree: dict
    byid: dict
    kids: dict
    size: dict              # node id -> nodes below it
    total: int
    split: str
    nodes: list             # NodePlan per sample
    pool_too_large: int     # samples skipped: their pool would exceed max_pool
    noise_short: int        # pools with fewer noise users than asked (not enough active before)
    n_candidates: int       # candidates over all samples


class SampleMaker:
    """Turns trees into sample rows, a chunk of trees at a time (:func:`process_chunk`).

    Per tree, :meth:`plan` checks the fields the samples use and makes every random draw
    (k, noise users, candidate order) from the tree's own generator; per chunk, the
    activity counts of all candidates come from one vectorized search and their prompt
    lines from one pass (:meth:`candidate_lines`); then :meth:`emit` assembles each
    sample (prompts as UTF-8 bytes) into column buffers that become one Arrow record batch.
    """

    def __init__(self, users: UserTable, *, max_depth: int, k_ranges: list[list[float]], max_pool: int,
                 seed: int, cutoffs: tuple[int, int], with_children: bool = True, history: bool = True,
                 order: str = "pool", leaf_share: float = 0.0, noise_users: str = "active_before"):
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
        self.noise_all = noise_users == "all"  # noise from every user of the build, not only those active before
        # share of the nodes without children (depth <= max_depth) that also make a sample,
        # whose answer is "[]"; drawn from a second generator per tree, so that the other
        # samples are the same with or without them
        self.leaf_share = leaf_share
        self._leaf_rng = random.Random()
        self.leaves = {"leaf_samples": 0, "leaf_empty_pool": 0}  # made; drawn but no noise user came out
        # candidates with no activity before the sample's time, true vs noise (noise users
        # always have some: a history feature in the prompt can give the true ones away)
        self.no_history = {"true": 0, "true_total": 0, "noise": 0, "noise_total": 0}
        self._rng = random.Random()
        n = len(users.ids)
        self._head: list[bytes | None] = [None] * n   # user idx -> b"<id>: <static>; " (the whole line without history)
        self._early: list[tuple | None] = [None] * n  # user idx -> ((time, b"; said: <text>"), ...) for profile-less users
        self._acts: list[bytes] = []                  # count -> b"<count> earlier acts"
        self._bare = [False] * n                      # user idx -> no static profile (behaviour shown)
        for i in range(n):  # once here (before any worker forks), not per chunk
            self._fill_user(i)
        self._ids_arrow = None                        # user ids as an Arrow array, for the candidates column

    def take_stats(self) -> dict:
        """The counters since the last call (then reset): summed over chunks and workers."""
        st = {"pool_too_large": self.skipped["pool_too_large"], "noise_short": self.noise_short, **self.no_history,
              **self.leaves}
        self.leaves = dict.fromkeys(self.leaves, 0)
        self.skipped = {"pool_too_large": 0}
        self.noise_short = 0
        self.no_history = dict.fromkeys(self.no_history, 0)
        return st

    def split_of(self, root_time: int) -> str:
        return "train" if root_time < self.c1 else ("val" if root_time < self.c2 else "test")

    def plan(self, tree: dict) -> "TreePlan | None":
        """The samples of one tree before any text (:class:`TreePlan`), or None when no node
        makes a sample. All random draws happen here, in node order; a field
        of the wrong type raises here, so that the tree is rejected as a whole."""
        nodes = tree["nodes"]
        root = nodes[0]
        byid, kids = index_tree(tree)
        if not kids and not self.leaf_share:
            return None
        # subtree sizes: nodes are sorted by (time, depth) and a child is never before its
        # parent, so walking them backwards meets every child before its parent
        size = dict.fromkeys(byid, 0)
        for n in reversed(nodes):
            p = n["parent"]
            if p is not None:
                size[p] += size[n["id"]] + 1
        total = max(len(nodes) - 1, 1)
        root_time = tree["root_time"]
        split = self.split_of(root_time)
        rid = tree["root_id"]
        if type(rid) is not str or type(root_time) is not int or type(root["text"]) is not str:
            raise TypeError("root_id, root_time or the root's text has the wrong type")
        u = self.u
        rng = self._rng
        rng.seed(f"{self.seed}:{rid}")  # each tree's draws depend on the seed and the root alone
        pos, by_first, first_time, first_sorted = u.pos, u.by_first, u.first_list, u.first_sorted
        k_ranges, last_k, max_depth, max_pool = self.k_ranges, len(self.k_ranges) - 1, self.max_depth, self.max_pool
        todo: list[NodePlan] = []
        noise_all, n_all = self.noise_all, len(by_first)
        n_skip = n_short = n_cand = 0

        def pool(rng, n, true_idx, n_true):
            """``true_idx`` plus noise users active before ``n``'s time (k from the depth's
            range times ``n_true``), shuffled; None when it would exceed max_pool."""
            nonlocal n_skip, n_short
            rnd = rng.random
            t, d = n["time"], n["depth"]
            lo, hi = k_ranges[d if d < last_k else last_k]
            n_noise = int(round((lo + (hi - lo) * rnd()) * n_true))  # rng.uniform(lo, hi), inlined
            if len(true_idx) + n_noise > max_pool:
                n_skip += 1
                return None
            cand = true_idx[:]
            if n_noise:
                m = n_all if noise_all else bisect_left(first_sorted, t)  # u.eligible(t)
                excl = set(true_idx)
                excl.add(pos[n["user"]])
                avail = m
                for i in excl:  # the excluded among the m eligible
                    if 0 <= first_time[i] < t or (noise_all and first_time[i] >= 0):
                        avail -= 1
                want = min(n_noise, max(avail, 0))
                if want < n_noise:
                    n_short += 1
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
            return cand

        leaves = []
        for n in nodes:
            d = n["depth"]
            if d > max_depth:
                continue
            kl = kids.get(n["id"])
            if kl is None:
                leaves.append(n)
                continue
            t = n["time"]
            if type(t) is not int or type(n["action"]) is not str or type(n["text"]) is not str:
                raise TypeError(f"node {n['id']!r}: time, action or text has the wrong type")
            ch = [byid[c] for c in kl]
            actions = []
            texts = []
            for c in ch:
                a, x = c["action"], c["text"]
                if type(a) is not str or type(x) is not str:
                    raise TypeError(f"node {c['id']!r}: action or text is not a string")
                actions.append(a)
                texts.append(x)
            users = [c["user"] for c in ch]
            uidx = [pos[x] for x in users]
            true_idx = list(dict.fromkeys(uidx))
            cand = pool(rng, n, true_idx, len(true_idx))
            if cand is None:
                continue
            n_cand += len(cand)
            todo.append(NodePlan(n, ch, cand, true_idx, uidx, users, actions, texts))
        if self.leaf_share and leaves:
            lrng = self._leaf_rng
            lrng.seed(f"{self.seed}:{rid}:leaves")
            for n in leaves:
                if lrng.random() >= self.leaf_share:
                    continue
                if type(n["time"]) is not int or type(n["action"]) is not str or type(n["text"]) is not str:
                    raise TypeError(f"node {n['id']!r}: time, action or text has the wrong type")
                cand = pool(lrng, n, [], 1)  # noise as for one reactor: the answer is "[]"
                if cand is None:
                    continue
                if not cand:  # k came out 0 (or nobody was active before): a question with no one to ask
                    self.leaves["leaf_empty_pool"] += 1
                    continue
                n_cand += len(cand)
                todo.append(NodePlan(n, [], cand, [], [], [], [], []))
        if not todo:
            self.skipped["pool_too_large"] += n_skip
            return None
        return TreePlan(tree, byid, kids, size, total, split, todo, n_skip, n_short, n_cand)

    def _fill_user(self, i: int) -> None:
        u = self.u
        s = u.static_line(i)
        uid = u.ids[i]
        if not self.history:
            self._head[i] = f"{uid}: {s if s is not None else 'no profile'}".encode()
        elif s is not None:
            self._head[i] = f"{uid}: {s}; ".encode()
        else:
            self._bare[i] = True
            self._head[i] = f"{uid}: no profile; ".encode()
            e = u._early[i]
            if e:
                self._early[i] = tuple((x[0], f"; said: {clip(x[1], SAID_CHARS)}".encode()) for x in orjson.loads(e)) or None

    def candidate_lines(self, cand: list[int], counts: list[int], times: list[int],
                        present: list[Present | None] | None = None) -> list[bytes]:
        """The prompt line of candidate ``cand[k]`` with ``counts[k]`` acts before ``times[k]``
        (the same text as :meth:`UserTable.profile_line`, with ``present[k]``), UTF-8 encoded."""
        head, early = self._head, self._early
        if not self.history:
            return [head[i] for i in cand]
        acts = self._acts
        top = max(counts, default=0)
        if top >= len(acts):
            acts += [f"{c} earlier acts".encode() for c in range(len(acts), top + 1)]
        if present is None or self.u.cascade is None:
            return [head[i] + acts[c] if early[i] is None else self._said(head[i] + acts[c], early[i], t)
                    for i, c, t in zip(cand, counts, times)]
        bare, beh = self._bare, self.u.behaviour
        out = []
        for i, c, t, pr in zip(cand, counts, times, present):
            line = head[i] + acts[c]
            if bare[i] and c and pr is not None:
                line += b"; " + behaviour_text(beh(i, c, t, pr)).encode()
            out.append(line if early[i] is None else self._said(line, early[i], t))
        return out

    def ids_arrow(self):
        """All user ids as an Arrow string array (made once)."""
        if self._ids_arrow is None:
            import pyarrow as pa

            self._ids_arrow = pa.array(self.u.ids, pa.string())
        return self._ids_arrow

    @staticmethod
    def _said(line: bytes, early: tuple, t: int) -> bytes:
        said = None
        for tt, sfx in early:  # the latest of the early texts strictly before t
            if tt < t:
                said = sfx
        return line + said if said is not None else line

    def emit(self, plan: "TreePlan", lines: list[bytes], counts: list[int], j: int, buf: "_Columns") -> dict:
        """Append one planned tree's samples to ``buf`` (candidate ``k`` of the tree is
        ``j + k`` in ``lines`` and ``counts``); returns its no-history counters. The
        candidates column is filled in :meth:`_Columns.batch` from the user indices."""
        tree, byid, kids, size, total, split, todo = plan[:7]  # TreePlan's first fields
        rid, root_time = tree["root_id"], tree["root_time"]
        root = tree["nodes"][0]
        # the prompt of prompt.build_prompt, assembled from bytes made once per tree or user
        head = f"{FIRST_LINE}\n{POST_PREFIX}{root['user']}: {clip(root['text'], POST_CHARS) or '(no text)'}\n".encode()
        head0 = head + CANDIDATES.encode() + b"\n"
        chain_lines: dict[str, bytes] = {}
        full = None
        deepest = max(n["depth"] for n in tree["nodes"])
        if self.with_children and any(size[x.node["id"]] - len(x.children) <= SUBTREE_CAP for x in todo):
            full = {}  # every node's whole subtree as nested dicts, shared between samples
            for n in tree["nodes"]:
                nd = {"id": n["id"], "user": n["user"], "action": n["action"], "text": n["text"], "time": n["time"],
                      "children": []}
                full[n["id"]] = nd
                p = n["parent"]
                if p is not None:
                    full[p]["children"].append(nd)
        nh_true = nh_true_total = nh_noise = nh_noise_total = 0
        pbuf, rbuf, cbuf = buf.prompt, buf.response, buf.children
        poff, roff, coff = buf.prompt_off, buf.response_off, buf.children_off
        tail, pool = _PROMPT_TAILS[self.order], self.order == "pool"
        for n, ch, cand, true_idx, uidx, true_users, actions, texts in todo:
            t, d, nid = n["time"], n["depth"], n["id"]
            nc = len(cand)
            e = j + nc
            zero = counts[j:e].count(0)
            if zero:
                ts = set(true_idx)
                zero_true = sum(1 for i, c in zip(cand, counts[j:e]) if c == 0 and i in ts)
                nh_true += zero_true
                nh_noise += zero - zero_true
            n_true = len(true_idx)
            nh_true_total += n_true
            nh_noise_total += nc - n_true
            chain = None
            if d > 0:
                chain = []
                x = n
                while x["parent"] is not None:
                    cl = chain_lines.get(x["id"])
                    if cl is None:
                        cl = chain_lines[x["id"]] = thread_line(x).encode()
                    chain.append(cl)
                    x = byid[x["parent"]]
                chain.reverse()
            if chain:
                pre = head + b"Thread:\n" + b"\n".join(chain) + b"\n" + _THREAD_HEADER
            else:
                pre = head0
            # prompt, response and children go straight into the chunk's byte buffers
            pbuf += pre
            if nc:
                pbuf += b"\n".join(lines[j:e])
                pbuf += tail
            else:
                pbuf += tail[1:]
            poff.append(len(pbuf))
            if pool and len(ch) > 1:  # the answer lists reactors as the pool does (stable: a user's acts keep their time order)
                at = [cand.index(i) for i in uidx]
                rbuf += orjson.dumps([{"user": true_users[k], "action": actions[k], "text": texts[k]}
                                      for k in sorted(range(len(ch)), key=at.__getitem__)])
            else:
                rbuf += orjson.dumps([{"user": a, "action": b, "text": c} for a, b, c in zip(true_users, actions, texts)])
            roff.append(len(rbuf))
            if not self.with_children:
                pass
            elif size[nid] - len(ch) > SUBTREE_CAP:  # cut to SUBTREE_CAP nodes below the children
                cbuf += subtree_json([c["id"] for c in ch], kids, byid, SUBTREE_CAP)
            elif deepest - d > DEEP_LEVELS:  # too deep for orjson
                cbuf += subtree_json([c["id"] for c in ch], kids, byid)
            else:  # nothing to cut: the shared dicts
                cbuf += orjson.dumps([full[c["id"]] for c in ch])
            coff.append(len(cbuf))
            buf.add((f"{rid}:{nid}", rid, nid, n["user"], d, split, t, root_time, None, None,
                     None, true_users, actions, texts, nc, size[nid] / total, size[nid], None))
            j = e
        return {"true": nh_true, "true_total": nh_true_total, "noise": nh_noise, "noise_total": nh_noise_total}


_PROMPT_TAILS = {o: ("\n" + line).encode() for o, line in ANSWER_LINES.items()}  # "\n" + the answer line
_THREAD_HEADER = (CANDIDATES_THREAD + "\n").encode()


class _Columns:
    """Sample rows: tuples in the order of ``sample_files.sample_schema`` for the small columns;
    ``prompt``, ``response`` and ``children`` appended as UTF-8 to one byte buffer each
    (with end offsets), ``candidates`` given to :meth:`batch` as user indices. Then one
    Arrow record batch, the three big columns without a Python object per value."""

    BIG = ("prompt", "response", "children")

    def __init__(self):
        self.rows: list[tuple] = []
        self.add = self.rows.append
        for c in self.BIG:
            setattr(self, c, bytearray())
            setattr(self, c + "_off", [0])

    def __len__(self) -> int:
        return len(self.rows)

    def mark(self) -> tuple:
        return len(self.rows), [len(getattr(self, c)) for c in self.BIG]

    def rollback(self, m: tuple) -> None:
        """Drop the rows added after :meth:`mark` (a tree that failed half-way)."""
        n, sizes = m
        del self.rows[n:]
        for c, size in zip(self.BIG, sizes):
            del getattr(self, c)[size:]
            del getattr(self, c + "_off")[n + 1:]

    def batch(self, cand_idx: np.ndarray, ids):
        """``cand_idx``: the user indices of every row's candidates, row after row;
        ``ids``: all user ids as an Arrow string array (the candidates column is a take)."""
        import pyarrow as pa
        from itertools import chain

        s, ls, i32, i64 = pa.string(), pa.list_(pa.string()), pa.int32(), pa.int64()
        cols = list(zip(*self.rows))

        def utf8(c):  # a byte buffer and its offsets -> binary -> string (the cast checks the UTF-8)
            off = np.array(getattr(self, c + "_off"), dtype=np.int32)
            data = pa.py_buffer(getattr(self, c))
            return pa.Array.from_buffers(pa.binary(), len(off) - 1, [None, pa.py_buffer(off), data]).cast(s)

        def offsets(lengths):
            off = np.zeros(len(lengths) + 1, dtype=np.int32)
            np.cumsum(lengths, out=off[1:])
            return pa.array(off)

        def lists(col):
            return pa.ListArray.from_arrays(offsets(np.fromiter(map(len, col), dtype=np.int32, count=len(col))),
                                            pa.array(list(chain.from_iterable(col)), s), type=ls)

        cands = pa.ListArray.from_arrays(offsets(np.array(cols[14], dtype=np.int32)), ids.take(pa.array(cand_idx)),
                                         type=ls)

        arrays = [pa.array(cols[0], s), pa.array(cols[1], s), pa.array(cols[2], s), pa.array(cols[3], s),
                  pa.array(cols[4], i32), pa.array(cols[5], s), pa.array(cols[6], i64), pa.array(cols[7], i64),
                  utf8("prompt"), utf8("response"), cands, lists(cols[11]), lists(cols[12]), lists(cols[13]),
                  pa.array(cols[14], i32), pa.array(cols[15], pa.float64()), pa.array(cols[16], i32), utf8("children")]
        return pa.RecordBatch.from_arrays(arrays, schema=sample_schema())


TREE_ERRORS = (orjson.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError, ValueError)


def _bad(no: int, e: Exception) -> tuple[int, str]:
    if isinstance(e, BadTree):
        return no, f"bad_tree: {str(e)[:200]}"
    return no, f"bad_tree: {type(e).__name__}: {str(e)[:100]}"


def process_chunk(maker: SampleMaker, chunk: list[tuple[int, bytes]]) -> tuple[dict, list[tuple[int, str]], dict]:
    """Tree lines -> ({split: Arrow record batch}, [(line, reason)] for bad lines, counters).

    A bad line (not JSON, missing keys, wrong types) is rejected whole: none of its samples
    and none of its counters are kept."""
    import pyarrow.compute as pc

    plans = []
    bad: list[tuple[int, str]] = []
    for no, raw in chunk:
        try:
            p = maker.plan(orjson.loads(raw))
        except TREE_ERRORS as e:
            bad.append(_bad(no, e))
            continue
        if p is not None:
            plans.append((no, p))
    # every candidate of the chunk at once: activity counts before the sample's time, prompt lines
    flat: list[int] = []
    times: list[int] = []
    lens: list[int] = []
    present: list[Present | None] | None = [] if maker.history and maker.u.cascade is not None else None
    for _, p in plans:
        byid = p.byid
        for x in p.nodes:
            cand, n = x.candidates, x.node
            flat += cand
            times.append(n["time"])
            lens.append(len(cand))
            if present is not None and not any(map(maker._bare.__getitem__, cand)):
                present += [None] * len(cand)
            elif present is not None:  # who is in the thread: the author, then the thread root-first
                chain = []
                while n["parent"] is not None:
                    chain.append(n["user"])
                    n = byid[n["parent"]]
                present += [maker.u.present([n["user"], *reversed(chain)], x.node["time"])] * len(cand)
    counts: list[int] = []
    lines: list[bytes] = []
    idx = np.array(flat, dtype=np.int64)
    if flat:
        tt = np.repeat(np.array(times, dtype=np.int64), lens)
        counts = maker.u.acts_before_many(idx, tt).tolist()
        lines = maker.candidate_lines(flat, counts, tt.tolist(), present)
    buf = _Columns()
    depths: dict[int, int] = {}
    keep = None  # candidates of trees that failed half-way are left out of the candidates column
    j = 0
    for no, p in plans:
        m = buf.mark()
        j_next = j + p.n_candidates
        try:
            nh = maker.emit(p, lines, counts, j, buf)
        except TREE_ERRORS as e:
            buf.rollback(m)
            bad.append(_bad(no, e))
            if keep is None:
                keep = np.ones(len(idx), dtype=bool)
            keep[j:j_next] = False
            j = j_next
            continue
        j = j_next
        maker.skipped["pool_too_large"] += p.pool_too_large
        maker.noise_short += p.noise_short
        for k, v in nh.items():
            maker.no_history[k] += v
        for x in p.nodes:
            d = x.node["depth"]
            depths[d] = depths.get(d, 0) + 1
            if not x.children:
                maker.leaves["leaf_samples"] += 1
    bad.sort()
    batches = {}
    plens: list[int] = []
    if len(buf):
        b = buf.batch(idx if keep is None else idx[keep], maker.ids_arrow())
        plens = pc.utf8_length(b.column("prompt")).to_pylist()
        splits = {r[5] for r in buf.rows}
        if len(splits) == 1:
            batches[splits.pop()] = b
        else:
            col = b.column("split")
            for s in sorted(splits):
                batches[s] = b.filter(pc.equal(col, s))
    return batches, bad, {**maker.take_stats(), "n_trees": len(chunk), "prompt_chars": plens, "by_depth": depths}


def sample_lines(maker: SampleMaker, chunk: tuple[str, int, int, int]):
    """:func:`process_chunk` on one ``ingest.line_chunks`` piece of ``trees.jsonl``."""
    from simtune.recipes.social.data.weibo import read_chunk

    return process_chunk(maker, read_chunk(chunk))
