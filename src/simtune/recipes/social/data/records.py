"""What every reader of a social corpus shares: the accepted dates, a rejected record (raised
inside a reader, recorded by the builder with its file, line and reason) and JSON decoding."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from simtune.io import DataError, DateRange, require_input_file
from simtune.recipes.social.schema import R_BAD_ENCODING, R_BAD_JSON


FIRST_DATE = "2009-08-01"  # Sina Weibo opened to the public in August 2009
LAST_DATE = DateRange.TODAY
DIFFUSION_FIRST_DATE = "2005-03-01"  # Douban opened in March 2005 (Twitter in 2006)
EARLY_TEXTS_PER_USER = 3     # texts kept per profile-less user (the earliest ones)
EARLY_TEXT_CHARS = 40


def default_dates() -> DateRange:
    """The accepted dates of a social corpus unless a command says otherwise."""
    return DateRange.parse(FIRST_DATE, LAST_DATE)


class Reject(Exception):
    def __init__(self, reason: str, field: str | None = None, detail: str = ""):
        self.reason, self.field, self.detail = reason, field, detail
        super().__init__(reason)


def decode_json_line(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(R_BAD_ENCODING, None, "line is not valid UTF-8") from None
        raise Reject(R_BAD_JSON, None, str(e)[:120]) from None


def load_json_file(path: str | os.PathLike, what: str) -> Any:
    require_input_file(path, f"{what} file")
    try:
        return orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as e:
        raise DataError(path, getattr(e, "lineno", None), None, f"{what} is not valid JSON: {e}") from None


def kind_of(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return "an empty string" if not v else "blank"
    return {bool: "a boolean", list: "a list", dict: "an object", float: "a number with a fraction"}.get(type(v), type(v).__name__)
