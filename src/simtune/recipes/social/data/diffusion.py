"""Who-joins cascade files (``uid timestamp,uid timestamp,...`` per line): the first user is
the root's author, every later one a depth-1 repost with no text."""
from __future__ import annotations

from pathlib import Path

from simtune.io import DateRange
from simtune.recipes.social.data.records import Reject
from simtune.recipes.social.data.trees import Item, TreeBuilder
from simtune.recipes.social.schema import R_BAD_DATE, R_BAD_ENCODING, DateFormatError


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
                    raise Reject(R_BAD_ENCODING, None) from None
                parts = text.split(",")
                acts = []
                seen = set()
                for k, part in enumerate(parts, 1):
                    f = part.split()
                    if len(f) != 2:
                        raise Reject(R_ODD_FIELDS, f"pair {k}", f"{part.strip()[:40]!r} is not '<user> <time>'")
                    try:
                        t = _diffusion_time(f[1])
                    except DateFormatError as e:
                        raise Reject(R_BAD_DATE, f"pair {k}", str(e)) from None
                    if not dates.holds_time(t):
                        raise Reject(R_BAD_DATE, f"pair {k}", f"{t} is outside the accepted dates {dates} "
                                                               f"(first_date, last_date)")
                    if acts and t < acts[-1][1]:
                        raise Reject(R_OUT_OF_ORDER, f"pair {k}", f"{t} is before {acts[-1][1]}")
                    if f[0] in seen:
                        raise Reject(R_USER_TWICE, f"pair {k}", f"user {f[0][:20]} again")
                    seen.add(f[0])
                    acts.append((f[0], t))
            except Reject as r:
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
