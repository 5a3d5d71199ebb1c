"""Small I/O helpers shared by every pipeline.

Three rules live here so that no pipeline has to remember them:
- nothing half-written looks done: files and folders are written under a temporary
  name in the same directory and renamed into place only when complete;
- nothing is replaced that a command cannot prove it wrote: a folder replaced as a whole
  carries a marker (``.simtune-output.json``) naming the command, and holds nothing else
  than what that command wrote; outputs are kept apart from inputs (:func:`check_apart`);
- nothing is dropped silently: bad records go to a :class:`RejectLog` with file, line
  and reason, and the counts by reason end up in the run summary.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping


class DataError(ValueError):
    """A bad input record: names the file, the line (1-based) and the field."""

    def __init__(self, path: str | os.PathLike | None, line: int | None, field: str | None, reason: str):
        self.path, self.line, self.field, self.reason = (str(path) if path else None), line, field, reason
        where = str(path) if path else "<input>"
        if line is not None:
            where += f":{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{reason}")


def _config_error(message: str) -> Exception:
    from simtune.config import ConfigError  # config imports this module: import it when needed
    return ConfigError(message)


# --------------------------------------------------------------------------- input files

_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def input_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as an input file ("is a folder, not a file", "is not a
    regular file (a named pipe)", "not found", ...); None when it can. A named pipe or a
    device is refused: reading it would wait for a writer or never end."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "not found"
    except NotADirectoryError:
        return "not found (a part of its path is a file)"
    except PermissionError:
        return "cannot be reached (permission denied)"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    for test, kind in _NOT_REGULAR:
        if test(st.st_mode):
            return f"is not a regular file ({kind})"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def require_input_file(path: str | os.PathLike, what: str = "input file") -> None:
    """:func:`input_file_problem` as a :class:`DataError` naming the path (``what``: how the
    message calls it, e.g. "profile file")."""
    why = input_file_problem(path)
    if why:
        raise DataError(path, None, None, f"{what} {why}")


# --------------------------------------------------------------------------- where an output may go

def output_place_problem(path: str | os.PathLike) -> str | None:
    """Why nothing can be written at ``path`` (its folder lies under a file, or cannot be
    created or written, e.g. in /proc); None when it can. Nothing is created here."""
    parent = Path(os.path.abspath(Path(path).expanduser())).parent
    probe = parent
    while not os.path.lexists(probe):  # the nearest part of the path that exists
        probe = probe.parent
    if not probe.is_dir():
        return f"lies under {probe}, which is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot be written: no permission to write in {probe}"
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return f"cannot be written: {probe} is on a read-only file system"
    if _virtual(probe):
        return f"cannot be written: {probe} is a virtual file system (/proc, /sys)"
    return None


def _virtual(folder: Path) -> bool:
    real = Path(os.path.realpath(folder))
    return any(real == Path(v) or Path(v) in real.parents for v in ("/proc", "/sys"))


def _write_error(path: Path, e: OSError) -> Exception:
    """A failure to create an output (or its temporary sibling) as one ConfigError naming it."""
    return _config_error(f"cannot write {path}: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""))


# --------------------------------------------------------------------------- what a command may replace

MARKER = ".simtune-output.json"
MARKER_SCHEMA = 1


@dataclass(frozen=True)
class OutputMarker:
    """``.simtune-output.json`` in a folder a command wrote as a whole: the command
    (``data social build``), the marker's schema, a random id of the run, and every path
    the command wrote there (relative, ``/``-separated; the marker itself aside)."""

    command: str
    run_id: str
    files: tuple[str, ...]
    schema: int = MARKER_SCHEMA

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "OutputMarker | None":
        """The marker of ``folder``; None when there is none or it cannot be read."""
        try:
            d = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
            return cls(command=str(d["command"]), run_id=str(d["run_id"]), files=tuple(map(str, d["files"])),
                       schema=int(d["schema"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, folder: str | os.PathLike) -> None:
        d = {"command": self.command, "schema": self.schema, "run_id": self.run_id, "files": list(self.files)}
        (Path(folder) / MARKER).write_text(json.dumps(d, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def folder_entries(folder: str | os.PathLike) -> set[str]:
    """Every file, folder and link below ``folder`` (relative, ``/``-separated), the marker aside."""
    def unreadable(e: OSError):
        raise e

    out = set()
    for root, dirs, files in os.walk(folder, onerror=unreadable):
        rel = Path(root).relative_to(folder)
        out.update((rel / n).as_posix() for n in dirs + files)
    out.discard(MARKER)
    return out


def _some(names) -> str:
    names = sorted(names, key=lambda n: (n.count("/"), n))
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def replace_refusal(path: str | os.PathLike, command: str | None) -> str | None:
    """Why ``command`` may not replace the folder ``path`` as a whole; None when it may.

    It may when ``path`` is absent or an empty folder, or when its marker names the same
    command and it holds nothing the marker does not list. Never a link, a file, or the
    current folder or one above it. ``command=None`` (a run's own folders inside its
    experiment folder: checkpoints) skips the marker check, nothing else."""
    path = Path(path)
    if path.is_symlink():
        return "is a symbolic link (give the folder it points to)"
    if path.exists() and not path.is_dir():
        return "is a file"
    if path.exists() and is_within(Path.cwd(), path):
        return "is the current folder or holds it"
    if path.name in ("", ".", ".."):
        return "names no folder of its own (it ends in '.' or '..')"
    if not path.exists():
        return None
    if command is None:
        return None
    try:
        found = folder_entries(path)
    except OSError as e:
        return f"cannot be read through ({e.strerror}: {e.filename})"
    marker = OutputMarker.read(path)
    if marker is None:
        if not found and not (path / MARKER).exists():
            return None
        return f"holds {_some(found or [MARKER])}, and no {MARKER} shows that `simtune {command}` wrote it"
    if marker.command != command:
        return f"is the output of `simtune {marker.command}`, not of `simtune {command}`"
    extra = found - set(marker.files)
    if extra:
        return f"holds {_some(extra)}, which `simtune {command}` did not write"
    return None


def refuse_replace(path: str | os.PathLike, command: str | None) -> None:
    """:func:`replace_refusal` as an error (ConfigError) naming the folder and what is in the way."""
    why = replace_refusal(path, command)
    if why:
        raise _config_error(f"refusing to replace {path}: it {why}; delete it yourself or choose a new folder")


# --------------------------------------------------------------------------- outputs apart from inputs

def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or below it, once both are resolved (symbolic links followed)."""
    p, f = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return p == f or f in p.parents


def overlap(out: str | os.PathLike, inp: str | os.PathLike) -> str | None:
    """How an output path meets an input path, links followed: ``is``, ``holds`` or ``is inside``
    it (a phrase naming the input); None when they are apart."""
    o, i = Path(out).expanduser().resolve(), Path(inp).expanduser().resolve()
    if o == i or (o.exists() and i.exists() and os.path.samefile(o, i)):
        return f"is the input {inp}"
    if o in i.parents:
        return f"holds the input {inp}"
    if i in o.parents:
        return f"is inside the input folder {inp}"
    return None


Paths = Mapping[str, "str | os.PathLike | list | tuple | None"]


def each_path(paths: Paths) -> Iterator[tuple[str, str | os.PathLike]]:
    """``(label, path)`` for every path given (lists flattened, None skipped)."""
    for label, value in paths.items():
        for p in value if isinstance(value, (list, tuple)) else [value]:
            if p:
                yield label, p


def input_overlap(out: str | os.PathLike, inputs: Paths) -> str | None:
    """The first way ``out`` meets one of ``inputs`` (:func:`overlap`, with the input's label)."""
    for label, inp in each_path(inputs):
        how = overlap(out, inp)
        if how:
            return f"{how} ('{label}')"
    return None


def check_apart(outputs: Paths, inputs: Paths) -> None:
    """Refuse (ConfigError), before any work, an output path that is, holds or lies inside an
    input path or another output, through links too. Keys are the names the user gave them
    (``--out``, ``inputs``); a value may be a list, or None (not given)."""
    outs = list(each_path(outputs))
    for k, (label, out) in enumerate(outs):
        how = input_overlap(out, inputs) or input_overlap(out, dict(outs[k + 1:]))
        if how:
            raise _config_error(f"'{label}' {out} {how}: an output may not be, hold or lie inside an input or "
                                f"another output")


# --------------------------------------------------------------------------- atomic writes

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# .tmp-<name>-<pid>-<host>-<random> (being written) and .old-<name>-<pid>-<host>-<random> (being replaced)
_SIBLING = re.compile(r"^\.(?P<kind>tmp|old)-(?P<name>.+)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{8}$")


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{kind}-{path.name}-{os.getpid()}-{_HOST}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a pid we may not signal: treat it as alive
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def clean_stale(folder: str | os.PathLike) -> None:
    """Clear what a killed write left in ``folder``: ``.tmp-*`` and ``.old-*`` siblings named by
    :func:`atomic_path` whose process (on this host) is gone. A ``.old-*`` folder whose
    output is missing (the kill came between the two renames of a replace) is put back;
    other ``.old-*`` and every ``.tmp-*`` are removed. Nothing else is touched."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _SIBLING.match(name)
        if not m or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):  # another process may be clearing it too
            if m["kind"] == "old" and not os.path.lexists(folder / m["name"]):
                os.rename(folder / name, folder / m["name"])
            else:
                _remove(folder / name)


def _move_in(tmp: Path, path: Path, command: str | None) -> None:
    """Rename the folder ``tmp`` to ``path``; an old ``path`` goes aside first, is put back if
    the rename fails, and is removed once the new one is in place."""
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    refuse_replace(path, command)  # again: it may have changed while the output was written
    old = _sibling(path, "old")
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False, command: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling path; move it to ``path`` only if the block succeeds.

    An exception leaves nothing behind; a kill leaves at most a ``.tmp-*`` (or, mid-replace,
    ``.old-*``) sibling, which the next atomic write into the same folder clears
    (:func:`clean_stale`). Never a file or folder at ``path`` that looks complete.

    A folder (``is_dir``) is checked before the block runs and again before it is replaced:
    with ``command`` (a command's output folder), only a folder that command wrote may be
    replaced (:func:`replace_refusal`), and the new one gets its marker, listing what the
    block wrote; without it (a run's own folders), only a link or the current folder is
    refused. The old folder is renamed aside, the new one renamed in, then the old removed.
    """
    path = Path(path)
    if is_dir:
        refuse_replace(path, command)
    elif path.name in ("", ".", ".."):
        raise _config_error(f"{path}: names no file of its own (it ends in '.' or '..')")
    why = output_place_problem(path)
    if why:
        raise _config_error(f"cannot write {path}: it {why}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_error(path, e) from None
    clean_stale(path.parent)
    tmp = _sibling(path, "tmp")
    if is_dir:
        try:
            tmp.mkdir()
        except OSError as e:
            raise _write_error(path, e) from None
    try:
        yield tmp
        if is_dir:
            if command:
                OutputMarker(command, secrets.token_hex(8), tuple(sorted(folder_entries(tmp)))).write(tmp)
            _move_in(tmp, path, command)
        else:
            with open(tmp, "rb+") as fh:  # make the bytes durable before the rename
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent, default=str) + "\n")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, raw_line)`` for each non-blank line (1-based numbers)."""
    with open(path, "r", encoding="utf-8", errors="strict") as fh:
        for no, line in enumerate(fh, 1):
            if line.strip():
                yield no, line


def whole_json_objects(path: str | os.PathLike) -> Iterator[dict]:
    """The JSON objects of a JSON-lines file that this run or another one appends to: a torn
    line (a kill mid-write) or a line that is not an object is passed over."""
    for _, line in iter_jsonl(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            yield rec


class RejectLog:
    """Collects rejected records (file, line, reason) and counts them by reason.

    With ``strict=True`` the first rejection raises :class:`DataError` instead.
    Rejections are streamed to ``path`` as JSON lines when a path is given.
    """

    def __init__(self, path: str | os.PathLike | None = None, strict: bool = False):
        self.path = Path(path) if path else None
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self._fh = None

    def reject(self, file: str | os.PathLike | None, line: int | None, reason: str,
               field: str | None = None, record: Any = None) -> None:
        if self.strict:
            raise DataError(file, line, field, reason)
        self.counts[reason.split(":")[0]] += 1
        if self.path is not None:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "w", encoding="utf-8")
            entry = {"file": str(file) if file else None, "line": line, "field": field, "reason": reason}
            if record is not None:
                entry["record"] = record if isinstance(record, (str, int, float)) else str(record)[:500]
            self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RejectLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- plausible dates

@dataclass(frozen=True)
class DateRange:
    """The dates a corpus may hold, ``first`` to ``last`` (whole days, both included); a record
    dated outside is rejected (``bad_date``). A unix time is in range when its calendar date is,
    in some time zone (UTC-12 to UTC+14): the bounds are wide by a day, never narrow."""

    first: date
    last: date

    TODAY = "today"  # as a bound: the day the command runs (UTC+14, the first zone to reach a date)

    @classmethod
    def parse(cls, first: str, last: str) -> "DateRange":
        """From ``YYYY-MM-DD`` strings (``today`` allowed); ValueError saying what is wrong."""
        a, b = _day(first), _day(last)
        if a > b:
            raise ValueError(f"the first date {a} is after the last {b}")
        return cls(a, b)

    @property
    def lo(self) -> int:
        """The first unix second of the range: ``first`` 00:00 at UTC+14."""
        return int(datetime(self.first.year, self.first.month, self.first.day, tzinfo=timezone.utc).timestamp()) - 14 * 3600

    @property
    def hi(self) -> int:
        """The last unix second of the range: ``last`` 23:59:59 at UTC-12."""
        return int(datetime(self.last.year, self.last.month, self.last.day, tzinfo=timezone.utc).timestamp()) + 36 * 3600 - 1

    def holds_time(self, t: int) -> bool:
        return self.lo <= t <= self.hi

    def holds_day(self, d: date) -> bool:
        return self.first <= d <= self.last

    def __str__(self) -> str:
        return f"{self.first}..{self.last}"


def _day(text: str) -> date:
    if str(text).strip().lower() == DateRange.TODAY:
        return (datetime.now(timezone.utc) + timedelta(hours=14)).date()
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"{str(text)[:40]!r} is not a date YYYY-MM-DD or 'today'") from None


_LATIN_RUN = r"[\u00c0-\u00ff][\u0080-\u00ff\u0152-\u02dc\u2013-\u203a\u20ac\u2122]"
_NOT_TEXT = re.compile("[\ufffd\ud800-\udfff]")  # a replacement character, or a lone surrogate
_SUSPECT = re.compile(f"{_NOT_TEXT.pattern}|{_LATIN_RUN}")


def is_mojibake(text: str) -> bool:
    """True for text with U+FFFD, a lone surrogate (``"\\ud800"`` in JSON, bytes kept undecoded),
    or UTF-8 bytes read as latin-1 / cp1252 (``å¾®å\x8d\x9a``)."""
    if text.isascii() or not _SUSPECT.search(text):
        return False
    if _NOT_TEXT.search(text):
        return True
    if _utf8_misread(text):
        return True
    # mixed text: check the suspicious runs alone
    seg = re.findall(r"[\u0080-\u00ff\u0152-\u02dc\u2013-\u203a\u20ac\u2122]{2,}", text)
    return any(_utf8_misread(s) for s in seg)


def _utf8_misread(text: str) -> bool:
    """True when ``text`` is UTF-8 bytes decoded as latin-1 or cp1252."""
    for enc in ("latin-1", "cp1252"):
        try:
            text.encode(enc).decode("utf-8")
            return True
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return False
