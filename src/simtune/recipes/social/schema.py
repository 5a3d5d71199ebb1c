"""Shared pieces of the social data pipeline: record fields, date parsing, text checks.

Times are unix seconds (int). Node depth: the root post is depth 0, its direct
interactors depth 1, replies to those depth 2, ... A *sample* at depth d is built for a
node of depth d that has children (so sample depth 0 = "who reacts to the root").
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from simtune.io import is_mojibake  # noqa: F401  (shared with the other readers)

ACTIONS = ("comment", "repost")
ROOT_ACTION = "post"
KIND_CODE = {"post": 0, "comment": 1, "repost": 2}

# Reject reasons (the part before ':' is what the summary counts).
R_BAD_JSON = "bad_json"            # truncated / not JSON at all
R_BAD_ENCODING = "bad_encoding"    # bytes that are not UTF-8
R_WRONG_TYPE = "wrong_type"        # a field has the wrong JSON type
R_MISSING = "missing_field"        # a required field is absent or empty
R_BAD_DATE = "bad_date"            # a date in no known form
R_MOJIBAKE = "mojibake"            # UTF-8 text decoded as latin-1/cp1252 (or U+FFFD)
R_PARENT_MISSING = "parent_missing"  # a parent id that points nowhere
R_CYCLE = "cycle"                  # parent links that loop
R_DUPLICATE = "duplicate_id"       # the same node id twice in one cascade / corpus
R_ORPHAN = "parent_rejected"       # a node below a rejected node
R_BEFORE_PARENT = "before_parent"  # an interaction dated before the node it answers
R_LIST_REJECTED = "list_rejected"  # a CED root whose repost list is there but unreadable: its reactions are unknown

_MONTHS = {m: i for i, m in enumerate(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)}
_TZ_CACHE: dict[str, int] = {}


class DateFormatError(ValueError):
    pass


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 (proleptic Gregorian), Howard Hinnant's algorithm."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _tz_seconds(tok: str) -> int:
    off = _TZ_CACHE.get(tok)
    if off is None:
        if len(tok) != 5 or tok[0] not in "+-" or not tok[1:].isdecimal():
            raise DateFormatError(f"bad UTC offset {tok!r}")
        off = (int(tok[1:3]) * 3600 + int(tok[3:5]) * 60) * (1 if tok[0] == "+" else -1)
        _TZ_CACHE[tok] = off
    return off


_CN_MD = re.compile(r"^\s*(\d{1,2})月(\d{1,2})日\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
_DATE_ONLY_MIN = re.compile(r"^\d{4}-\d{2}-\d{2} \d{1,2}:\d{2}$")


_BASE_CACHE: dict[str, int] = {}  # the date and zone part of a fixed-width date -> unix seconds of its midnight
_HMS_CACHE: dict[str, int] = {}   # "HH:MM:SS" -> seconds into the day


def _hms(key: str) -> int | None:
    """``HH:MM:SS`` -> seconds (None: not that form); valid keys are cached (at most 86,400+)."""
    hh, mm, ss = key[0:2], key[3:5], key[6:8]
    if key[2] != ":" or key[5] != ":" or not (hh.isdecimal() and mm.isdecimal() and ss.isdecimal()):
        return None
    h, mi, se = int(hh), int(mm), int(ss)
    if h > 23 or mi > 59 or se > 60:
        return None
    v = _HMS_CACHE[key] = h * 3600 + mi * 60 + se
    return v


def _tz_or_none(tok: str) -> int | None:
    try:
        return _tz_seconds(tok)
    except DateFormatError:
        return None


def _weibo_base(key: str) -> int | None:
    """``" Nov 21 " + " +0800 2023"`` (the 30-char Weibo form without weekday and time)."""
    if key[0] != " " or key[7] != " " or key[8] != " " or key[14] != " ":
        return None
    mon = _MONTHS.get(key[1:4])
    dd, yy = key[5:7], key[15:19]
    if mon is None or not dd.isdecimal() or not yy.isdecimal() or not 1 <= int(dd) <= 31:
        return None
    off = _tz_or_none(key[9:14])
    if off is None:
        return None
    v = _BASE_CACHE[key] = _days_from_civil(int(yy), mon, int(dd)) * 86400 - off
    return v


def _iso_base(key: str) -> int | None:
    """``"2023-11-21T" + "+08:00"`` (the 25-char ISO form without the time)."""
    if key[4] != "-" or key[10] != "T" or key[14] != ":":
        return None
    y, m, d = key[:4], key[5:7], key[8:10]
    if not (y.isdecimal() and m.isdecimal() and d.isdecimal()) or not (1 <= int(m) <= 12 and 1 <= int(d) <= 31):
        return None
    off = _tz_or_none(key[11:14] + key[15:17])
    if off is None:
        return None
    v = _BASE_CACHE[key] = _days_from_civil(int(y), int(m), int(d)) * 86400 - off
    return v


def _fast_time(s: str) -> int | None:
    """The two common fixed-width forms without any parsing machinery; None = use the slow path.
    ``Tue Nov 21 10:00:00 +0800 2023`` (30 chars) and ``2023-11-21T10:00:00+08:00`` (25 chars).

    Each splits into a date-and-zone part and a time-of-day part, each checked once and then
    cached (the weekday is not checked). Base keys of the two forms cannot collide: a
    Weibo key starts with a space, an ISO key with a digit."""
    n = len(s)
    if n == 30:
        key = s[3:11] + s[19:]
        base = _BASE_CACHE.get(key)
        if base is None and (key[0] != " " or (base := _weibo_base(key)) is None):
            return None
    elif n == 25:
        key = s[:11] + s[19:]
        base = _BASE_CACHE.get(key)
        if base is None and (key[0] == " " or (base := _iso_base(key)) is None):
            return None
    else:
        return None
    hk = s[11:19]
    hms = _HMS_CACHE.get(hk)
    if hms is None and (hms := _hms(hk)) is None:
        return None
    return base + hms


def parse_time(value, default_tz_offset: int = 8 * 3600, ref_time: int | None = None) -> int:
    """Unix seconds from any of the supported forms; raises :class:`DateFormatError`.

    - Weibo API: ``Tue Nov 21 10:00:00 +0800 2023``
    - ISO 8601: ``2023-11-21T10:00:00+08:00``, ``...Z``, ``2023-11-21 10:00:00`` (no zone:
      ``default_tz_offset``, Beijing time by default), fractions of a second are dropped
    - ``2023-11-21 10:00`` (no seconds)
    - unix seconds as a number or a digit string (milliseconds when > 1e11)
    - CED's ``11月21日 10:00``: the year is taken from ``ref_time`` (the root's time),
      the year after when that would put it more than a day before the root.
    """
    if type(value) is str:
        t = _fast_time(value)
        if t is not None:
            return t
    if isinstance(value, bool):
        raise DateFormatError(f"a boolean is not a date: {value!r}")
    if isinstance(value, (int, float)):
        if value != value or value < 0 or value == float("inf"):
            raise DateFormatError(f"bad timestamp {value!r}")
        v = int(value)
        return v // 1000 if v > 10 ** 11 else v
    if not isinstance(value, str):
        raise DateFormatError(f"not a date: {type(value).__name__}")
    s = value.strip()
    if not s:
        raise DateFormatError("empty date")
    if s.isdecimal():
        return parse_time(int(s))
    parts = s.split()
    if len(parts) == 6 and parts[1] in _MONTHS:  # Weibo API form
        try:
            hh, mm, ss = parts[3].split(":")
            y, d = int(parts[5]), int(parts[2])
            if not (1 <= d <= 31 and 0 <= int(hh) < 24 and 0 <= int(mm) < 60 and 0 <= int(ss) <= 60):
                raise ValueError
            days = _days_from_civil(y, _MONTHS[parts[1]], d)
            return days * 86400 + int(hh) * 3600 + int(mm) * 60 + int(ss) - _tz_seconds(parts[4])
        except (ValueError, KeyError) as e:
            raise DateFormatError(f"bad Weibo date {s!r}") from e
    m = _CN_MD.match(s)
    if m:
        mon, day, hh, mi = (int(g) for g in m.groups()[:4])
        sec = int(m.group(5) or 0)
        ref = ref_time if ref_time is not None else 0
        year = datetime.fromtimestamp(ref + default_tz_offset, timezone.utc).year
        try:
            for y in (year, year + 1):
                t = int(datetime(y, mon, day, hh, mi, sec, tzinfo=timezone(timedelta(seconds=default_tz_offset))).timestamp())
                if ref_time is None or t >= ref_time - 86400:
                    return t
            return t
        except ValueError as e:
            raise DateFormatError(f"bad date {s!r}") from e
    if _DATE_ONLY_MIN.match(s):
        s = s + ":00"
    if len(s) >= 10 and s[4] == "-" and s[7] == "-":
        iso = s[:-1] + "+00:00" if s.endswith("Z") else s
        try:
            dt = datetime.fromisoformat(iso)
        except ValueError as e:
            raise DateFormatError(f"bad ISO date {s!r}") from e
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone(timedelta(seconds=default_tz_offset)))
        return int(dt.timestamp() // 1)
    raise DateFormatError(f"unknown date form {s!r}")


def format_weibo_time(t: int, tz_offset: int = 8 * 3600) -> str:
    """Inverse of the Weibo API form, e.g. ``Tue Nov 21 10:00:00 +0800 2023``."""
    dt = datetime.fromtimestamp(t + tz_offset, timezone.utc)
    sign = "+" if tz_offset >= 0 else "-"
    o = abs(tz_offset)
    return dt.strftime("%a %b %d %H:%M:%S ") + f"{sign}{o // 3600:02d}{o % 3600 // 60:02d} " + str(dt.year)


def format_iso_time(t: int, tz_offset: int = 8 * 3600) -> str:
    return datetime.fromtimestamp(t, timezone(timedelta(seconds=tz_offset))).isoformat()
