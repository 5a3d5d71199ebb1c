"""Read users' dated reviews from the two supported forms into one :class:`ReviewCorpus`.

1. The JSON form: a list of users, each
   ``{"user": {"profile": {"name": ..., <other profile fields>}}, "user_hash": optional,
   "task": {"description": ..., "task_behavior_collections": [{"type": "movie_review",
   "data": [{"continuation": <review>, "continuation_prefix": "电影名: <film>",
   "timestamp": "YYYY-MM-DD", "context": optional, "rating": optional 1-5}]}]}}``.
   Collections of another type are ignored (counted in ``ignored_collections``).
2. The Douban CSV form: a folder with ``info.csv`` (``id``, ``name``, ...) and
   ``details/<film id>.csv`` (``seen, username, id, time, location, votes, star, comment``),
   where ``id`` is the user key, ``star`` is 10..50 (1..5 stars) or empty (no rating).

Bad records never pass silently: with ``strict=True`` the first raises
:class:`~simtune.io.DataError` (file:line: field: reason); otherwise each goes to the
:class:`~simtune.io.RejectLog` with file, line and reason, and is counted by reason, so
``records_in = len(reviews) + rejected``. Rejected Douban rows: wrong number of fields
(stray quotes), rows merged by an unclosed quote (a row whose later physical lines have the
shape of rows of their own: the row and each row it swallowed, with their line numbers), a
line break in a field other than the comment, bytes that are not UTF-8, a time that is not
``YYYY-MM-DD[ HH:MM:SS]`` or lies outside the accepted dates, a star outside 10..50, an
empty review, mojibake, an empty user key or one with a space, and a second review of the
same film by the same user (the first in file order is kept). An empty star is *not* a
reject: it is a review without a rating (``rating=None``). Things that drop no review (a
film missing from info.csv, an empty details file) are counted in ``notes``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from simtune.io import DataError, DateRange, RejectLog, is_mojibake, require_input_file
from simtune.pseudonym import MentionScrubber, add_name

EXAMPLE_PATH = Path(__file__).with_name("example_reviews.json")
DOUBAN_COLUMNS = ["seen", "username", "id", "time", "location", "votes", "star", "comment"]
DOUBAN_TASK = "根据这位豆瓣用户以往的短评，模拟他/她的口吻与评价习惯，为一部电影写一条豆瓣短评。"
_FILM_PREFIX = re.compile(r"^\s*(电影名|电影|片名|影片|film|movie)\s*[:：]\s*", re.IGNORECASE)
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by errors="surrogateescape"
FIRST_DATE = "2005-03-01"  # Douban opened in March 2005
LAST_DATE = DateRange.TODAY


def default_dates() -> DateRange:
    """The accepted dates of a review corpus unless the config says otherwise."""
    return DateRange.parse(FIRST_DATE, LAST_DATE)


@dataclass
class Review:
    user_id: str
    film: str
    timestamp: str          # as written: YYYY-MM-DD or YYYY-MM-DD HH:MM:SS
    text: str
    rating: int | None = None   # 1..5 stars, None when the user gave none
    location: str | None = None
    film_id: str | None = None
    context: str | None = None
    source: str = ""        # "file:line", for error messages
    order: int = 0          # position in the input: breaks timestamp ties stably

    @property
    def when(self) -> datetime:
        return parse_time(self.timestamp)

    def sort_key(self) -> tuple:
        return (self.when, self.order)


@dataclass
class UserInfo:
    user_id: str
    profile: dict = field(default_factory=dict)   # JSON form: user.profile (name and any other fields)
    task: str | None = None


@dataclass
class ReviewCorpus:
    form: str                                   # "json" or "douban"
    source: str
    users: dict[str, UserInfo]
    reviews: list[Review]
    rejects: RejectLog
    ignored_collections: int = 0
    records_in: int = 0                         # review records read: len(reviews) + rejected
    notes: dict[str, int] = field(default_factory=dict)  # observations that drop no review
    names: dict[str, str | None] = field(default_factory=dict)  # a user's name -> user key (None: two users')
    mentions: dict[str, int] | None = None      # @mentions rewritten (scrub_mentions), None when not scrubbed

    def by_user(self) -> dict[str, list[Review]]:
        """Each user's reviews in time order (ties: input order)."""
        out: dict[str, list[Review]] = {}
        for r in self.reviews:
            out.setdefault(r.user_id, []).append(r)
        for v in out.values():
            v.sort(key=Review.sort_key)
        return out


def parse_time(s: str) -> datetime:
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(s.strip(), fmt)
        except ValueError:
            continue
    raise ValueError(f"time {s!r} is not YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")


def film_from_prefix(prefix: str) -> str:
    """``"电影名: 猫王 Elvis"`` or ``"电影名: 猫王: "`` -> ``"猫王 Elvis"`` / ``"猫王"``."""
    name = _FILM_PREFIX.sub("", prefix or "").strip()
    name = name.rstrip(":：").strip().strip("《》").strip()
    return name


def _context_text(ctx: Any) -> str | None:
    if ctx is None or ctx == "" or ctx == []:
        return None
    if isinstance(ctx, str):
        return ctx
    if isinstance(ctx, list):
        parts = [c.get("content", "") if isinstance(c, dict) else str(c) for c in ctx]
        return "\n".join(p for p in parts if p) or None
    if isinstance(ctx, dict):
        return ctx.get("content") or json.dumps(ctx, ensure_ascii=False)
    return str(ctx)


# --------------------------------------------------------------------------- JSON form

def load_json_form(path: str | os.PathLike, rejects: RejectLog | None = None,
                   dates: DateRange | None = None) -> ReviewCorpus:
    path = Path(path)
    rejects = rejects if rejects is not None else RejectLog()
    dates = dates or default_dates()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"not valid JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise DataError(path, None, None, f"not UTF-8: {e}") from None
    if not isinstance(data, list):
        raise DataError(path, 1, None, "the top level must be a list of users")
    users: dict[str, UserInfo] = {}
    names: dict[str, str | None] = {}
    reviews: list[Review] = []
    ignored = 0
    order = 0
    n_in = 0
    for ui, entry in enumerate(data):
        where = f"users[{ui}]"
        if not isinstance(entry, dict):
            raise DataError(path, None, where, "each user must be an object")
        profile = (entry.get("user") or {}).get("profile") if isinstance(entry.get("user"), dict) else None
        if not isinstance(profile, dict) or not str(profile.get("name") or "").strip():
            raise DataError(path, None, f"{where}.user.profile.name", "missing: every user needs a profile name")
        for key, v in [*((f"user.profile.{k}", v) for k, v in profile.items()), ("user_hash", entry.get("user_hash")),
                       ("task.description", (entry.get("task") or {}).get("description") if isinstance(entry.get("task"), dict) else None)]:
            if isinstance(v, str) and is_mojibake(v):
                raise DataError(path, None, f"{where}.{key}", "mojibake: not valid text (a lone surrogate, U+FFFD, "
                                                             "or UTF-8 read as latin-1)")
        uid = str(entry.get("user_hash") or profile["name"]).strip()
        if uid in users:
            raise DataError(path, None, f"{where}.user.profile.name", f"user {uid!r} appears twice")
        task = entry.get("task")
        if not isinstance(task, dict):
            raise DataError(path, None, f"{where}.task", "missing: every user needs a task object")
        colls = task.get("task_behavior_collections")
        if not isinstance(colls, list):
            raise DataError(path, None, f"{where}.task.task_behavior_collections", "missing or not a list")
        users[uid] = UserInfo(uid, dict(profile), str(task.get("description") or "").strip() or None)
        add_name(names, str(profile["name"]).strip(), uid)
        for ci, coll in enumerate(colls):
            if not isinstance(coll, dict) or coll.get("type") != "movie_review":
                ignored += 1
                continue
            items = coll.get("data")
            if not isinstance(items, list):
                raise DataError(path, None, f"{where}.task.task_behavior_collections[{ci}].data", "missing or not a list")
            for di, item in enumerate(items):
                n_in += 1
                fpath = f"{where}.task.task_behavior_collections[{ci}].data[{di}]"
                src = f"{path}:{fpath}"
                if not isinstance(item, dict):
                    rejects.reject(path, None, "not an object", field=fpath)
                    continue
                text, prefix = item.get("continuation"), item.get("continuation_prefix")
                bad_type = next((k for k, v in (("continuation", text), ("continuation_prefix", prefix))
                                 if v is not None and not isinstance(v, str)), None)
                if bad_type:
                    rejects.reject(path, None, f"wrong type: {bad_type} must be a string, got "
                                               f"{type(item[bad_type]).__name__}", field=f"{fpath}.{bad_type}")
                    continue
                if not text or not text.strip():
                    rejects.reject(path, None, "empty review: continuation is empty or missing", field=f"{fpath}.continuation")
                    continue
                film = film_from_prefix(prefix or "")
                if not film:
                    rejects.reject(path, None, "no film: continuation_prefix is empty", field=f"{fpath}.continuation_prefix")
                    continue
                bad_text = next((k for k, v in (("continuation", text), ("continuation_prefix", film)) if is_mojibake(v)), None)
                if bad_text:
                    rejects.reject(path, None, "mojibake: not valid text (a lone surrogate, U+FFFD, or UTF-8 read as "
                                               "latin-1)", field=f"{fpath}.{bad_text}")
                    continue
                ts = str(item.get("timestamp") or "").strip()
                try:
                    when = parse_time(ts)
                except ValueError as e:
                    rejects.reject(path, None, f"bad time: {e}", field=f"{fpath}.timestamp")
                    continue
                if not dates.holds_day(when.date()):
                    rejects.reject(path, None, f"bad time: {ts} is outside the accepted dates {dates} (first_date, "
                                               f"last_date)", field=f"{fpath}.timestamp")
                    continue
                rating = item.get("rating")
                if rating is not None:
                    try:
                        rating = -1 if isinstance(rating, bool) else float(rating)
                    except (TypeError, ValueError):
                        rating = -1
                    if not 1 <= rating <= 5:
                        rejects.reject(path, None, f"bad rating: {item.get('rating')!r} is not 1..5", field=f"{fpath}.rating")
                        continue
                    rating = int(round(rating))
                reviews.append(Review(uid, film, ts, text.strip(), rating, None, None,
                                      _context_text(item.get("context")), src, order))
                order += 1
    return ReviewCorpus("json", str(path), users, reviews, rejects, ignored, n_in, names=names)


# --------------------------------------------------------------------------- Douban CSV form

def read_douban_films(info: Path) -> dict[str, str]:
    films: dict[str, str] = {}
    with open(info, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        try:
            if not reader.fieldnames or "id" not in reader.fieldnames or "name" not in reader.fieldnames:
                raise DataError(info, 1, "id/name", f"info.csv must have columns id and name, has {reader.fieldnames}")
            for row in reader:
                fid = (row.get("id") or "").strip()
                if fid:
                    films[fid] = (row.get("name") or "").strip() or fid
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(info, reader.line_num + 1, None, f"not readable as UTF-8 CSV: {e}") from None
    return films


class _BadRow(Exception):
    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


class _PhysicalLines:
    """A file's lines as ``csv.reader`` reads them, kept until :meth:`take`: the physical
    lines of the row just read (a quoted field may span several)."""

    def __init__(self, fh):
        self._fh, self._taken = fh, []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._fh)
        self._taken.append(line)
        return line

    def take(self) -> list[str]:
        out, self._taken = self._taken, []
        return out


def _douban_fields(row: list[str], col: dict[str, int]) -> tuple[str, str, int | None]:
    """``(user key, time, rating)`` of a row whose fields have their shape: a user key without
    spaces or line breaks, a time ``YYYY-MM-DD[ HH:MM[:SS]]``, a star empty or 10..50;
    :class:`_BadRow` (reason, field) for the first that has not."""
    uid = row[col["id"]].strip()
    if not uid:
        raise _BadRow("no user: empty id", "id")
    if any(ch.isspace() for ch in uid):
        raise _BadRow("bad row: the user key holds a space or a line break (an unclosed quote?)", "id")
    ts = row[col["time"]].strip()
    try:
        parse_time(ts)
    except ValueError:
        raise _BadRow(f"bad time: {ts[:40]!r}", "time") from None
    star = row[col["star"]].strip()
    if star and not (star.isdigit() and int(star) in (10, 20, 30, 40, 50)):
        raise _BadRow(f"bad star: {star[:20]!r} is not 10..50", "star")
    return uid, ts, int(star) // 10 if star else None


def _swallowed_rows(lines: list[str], row: list[str], header: list[str], col: dict[str, int]) -> list[int]:
    """Offsets (1, 2, ...) of the physical lines after the first of one CSV row ``row`` that an
    unclosed quote made part of it: each has the shape of a Douban row of its own and lies
    whole inside one field of ``row`` (quotes aside). The last line of a field that spans lines
    holds the end of that field and the fields after it: it never lies inside one field."""
    fields_text = [f.replace('"', "") for f in row if "\n" in f or "\r" in f]
    out = []
    for k, text in enumerate(lines[1:], 1):
        fields = next(csv.reader([text]), [])
        if len(fields) < len(header):
            continue
        try:
            _douban_fields(fields, col)
        except _BadRow:
            continue
        bare = text.rstrip("\r\n").replace('"', "")
        if any(bare in f for f in fields_text):
            out.append(k)
    return out


def load_douban(folder: str | os.PathLike, rejects: RejectLog | None = None,
                dates: DateRange | None = None) -> ReviewCorpus:
    folder = Path(folder)
    rejects = rejects if rejects is not None else RejectLog()
    dates = dates or default_dates()
    info, details = folder / "info.csv", folder / "details"
    if not info.is_file():
        raise DataError(info, None, None, "Douban folder has no info.csv")
    if not details.is_dir():
        raise DataError(details, None, None, "Douban folder has no details/ folder")
    films = read_douban_films(info)
    reviews: list[Review] = []
    names: dict[str, str | None] = {}
    seen_pairs: set[tuple[str, str]] = set()
    order = n_in = 0
    notes = {"unknown_films": 0, "empty_files": 0}  # counted, but no review is dropped
    csv.field_size_limit(2**31 - 1)  # a very long review is a review, not a broken file
    for f in sorted(details.glob("*.csv")):
        fid = f.stem
        film = films.get(fid)
        if film is None:  # its reviews are kept under the film id
            notes["unknown_films"] += 1
            film = fid
        with open(f, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            lines = _PhysicalLines(fh)
            reader = csv.reader(lines)
            header = next(reader, None)
            lines.take()
            if header is None:
                notes["empty_files"] += 1
                continue
            header = [h.strip() for h in header]
            missing = [c for c in DOUBAN_COLUMNS if c not in header]
            if missing:
                raise DataError(f, 1, ",".join(missing), f"missing column(s); header is {header}")
            col = {c: header.index(c) for c in DOUBAN_COLUMNS}
            prev_line = reader.line_num
            try:
                for row in reader:
                    line, prev_line = prev_line + 1, reader.line_num  # a quoted field may span lines
                    physical = lines.take()
                    if not row:  # a blank line
                        continue
                    n_in += 1
                    swallowed = _swallowed_rows(physical, row, header, col) if len(physical) > 1 else []
                    if swallowed:  # never a review: its text holds other users' rows
                        last = line + len(physical) - 1
                        rejects.reject(f, line, f"bad row: lines {line}-{last} were read as one row (an unclosed "
                                                f"quote?); {len(swallowed)} row(s) below it rejected with it")
                        for k in swallowed:
                            n_in += 1
                            rejects.reject(f, line + k, f"bad row: merged into the row at line {line} by an "
                                                        f"unclosed quote (lines {line}-{last})")
                        continue
                    if len(row) != len(header):
                        rejects.reject(f, line, f"bad row: {len(row)} fields, expected {len(header)} (stray quote or comma?)")
                        continue
                    if any(_UNDECODED.search(x) for x in row):
                        rejects.reject(f, line, "bad encoding: the row is not valid UTF-8")
                        continue
                    broken = next((c for c in DOUBAN_COLUMNS if c != "comment" and "\n" in row[col[c]]), None)
                    if broken:
                        rejects.reject(f, line, "bad row: a line break inside a field other than the comment (an "
                                                "unclosed quote?)", field=broken)
                        continue
                    try:
                        uid, ts, rating = _douban_fields(row, col)
                    except _BadRow as e:
                        rejects.reject(f, line, e.reason, field=e.field)
                        continue
                    if not dates.holds_day(parse_time(ts).date()):
                        rejects.reject(f, line, f"bad time: {ts} is outside the accepted dates {dates} (first_date, "
                                                f"last_date)", field="time")
                        continue
                    text = row[col["comment"]].strip()
                    if not text:
                        rejects.reject(f, line, "empty review", field="comment")
                        continue
                    bad = next((k for k in ("comment", "location") if is_mojibake(row[col[k]])), None)
                    if bad:
                        rejects.reject(f, line, "mojibake: not valid text (U+FFFD, or UTF-8 read as latin-1)", field=bad)
                        continue
                    if (uid, fid) in seen_pairs:
                        rejects.reject(f, line, "duplicate: the same user reviewed this film earlier in the file", field="id")
                        continue
                    seen_pairs.add((uid, fid))
                    add_name(names, row[col["username"]].strip(), uid)
                    loc = row[col["location"]].strip() or None
                    reviews.append(Review(uid, film, ts, text, rating, loc, fid, None, f"{f}:{line}", order))
                    order += 1
            except csv.Error as e:
                raise DataError(f, reader.line_num, None, f"bad csv: {e}") from None
    users = {r.user_id: UserInfo(r.user_id, {}, None) for r in reviews}
    return ReviewCorpus("douban", str(folder), users, reviews, rejects, records_in=n_in, notes=notes, names=names)


def pseudonymize_corpus(corpus: ReviewCorpus, pz) -> ReviewCorpus:
    """The corpus with every user id, and each profile's ``name``, replaced by its pseudonym
    (``pz``: :class:`simtune.pseudonym.Pseudonymizer`); order and everything else unchanged."""
    users = {}
    for uid, u in corpus.users.items():
        profile = dict(u.profile)
        if isinstance(profile.get("name"), str):
            profile["name"] = pz(profile["name"])
        users[pz(uid)] = UserInfo(pz(uid), profile, u.task)
    reviews = [dataclasses.replace(r, user_id=pz(r.user_id)) for r in corpus.reviews]
    return dataclasses.replace(corpus, users=users, reviews=reviews)


def scrub_mentions(corpus: ReviewCorpus, pz=None) -> ReviewCorpus:
    """The corpus with the @mentions of every review's text and context rewritten
    (:class:`simtune.pseudonym.MentionScrubber`): a mention of a user of the corpus, by name,
    becomes ``@`` + that user's key as written (its pseudonym with ``pz``), any other mention
    ``@[someone]``. Counted in ``mentions``."""
    known = {name: (pz(uid) if pz else uid) if uid is not None else None for name, uid in corpus.names.items()}
    scrub = MentionScrubber(known)
    reviews = [dataclasses.replace(r, text=scrub(r.text), context=scrub(r.context) if r.context else r.context)
               for r in corpus.reviews]
    return dataclasses.replace(corpus, reviews=reviews, mentions=scrub.take_counts())


def is_example(path: str | os.PathLike) -> bool:
    """The shipped example (invented users): the one input ``pseudonymize: auto`` leaves as is."""
    return str(path) == "example" or Path(path).resolve() == EXAMPLE_PATH.resolve()


def load_reviews(path: str | os.PathLike, rejects: RejectLog | None = None,
                 dates: DateRange | None = None) -> ReviewCorpus:
    """Either form: a folder (Douban CSV) or a .json file (JSON form); ``example`` = the shipped
    example. ``dates``: the accepted dates (default :func:`default_dates`); reviews dated
    outside are rejected (``bad time``)."""
    if str(path) == "example":
        path = EXAMPLE_PATH
    p = Path(path)
    if p.is_dir():
        return load_douban(p, rejects, dates)
    require_input_file(p, "review data")
    if p.suffix.lower() != ".json":
        raise DataError(p, None, None, "expected a .json file (JSON form) or a Douban folder (info.csv + details/)")
    return load_json_form(p, rejects, dates)
