"""Small I/O helpers shared by every pipeline.

Two rules live here so that no pipeline has to remember them:
- nothing half-written looks done: files and folders are written under a temporary
  name in the same directory and renamed into place only when complete;
- nothing is dropped silently: bad records go to a :class:`RejectLog` with file, line
  and reason, and the counts by reason end up in the run summary.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterator


class DataError(ValueError):
    """A bad input record: names the file, the line (1-based) and the field."""

    def __init__(self, path: str | os.PathLike | None, line: int | None, field: str | None, reason: str):
        self.path, self.line, self.field, self.reason = (str(path) if path else None), line, field, reason
        where = str(path) if path else "<input>"
        if line is not None:
            where += f":{line}"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{reason}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to ``path`` only if the block succeeds.

    An exception (or a kill) leaves at most a ``.tmp-*`` sibling behind, never a file
    or folder at ``path`` that looks complete.
    """
    path = Path(path)
    if is_dir and path.exists():  # it is replaced as a whole at the end: never a link, never where we stand
        cwd = Path.cwd().resolve()
        if path.is_symlink() or cwd == path.resolve() or path.resolve() in cwd.parents:
            raise ValueError(f"refusing to replace {path}: it is a symbolic link, or the current folder or above it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent)) if is_dir else \
        path.parent / f".tmp-{path.name}-{os.getpid()}"
    try:
        yield tmp
        if is_dir:
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        else:
            with open(tmp, "rb+") as fh:  # make the bytes durable before the rename
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    except BaseException:
        if is_dir:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
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
