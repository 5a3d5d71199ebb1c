"""What a config says about paths and dates: which settings are paths (as ``--help`` names
their types), a path kept inside a folder, an output folder that may be replaced, the
accepted dates of a corpus. Each check raises ConfigError naming the key and where it was set."""
from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any

from simtune.config import BaseConfig, ConfigError
from simtune.io import DateRange, input_overlap, is_within, output_place_problem, replace_refusal


PATH_NAMES = ("_file", "_dir", "_path", "_root", "out", "config", "model_name_or_path")


def type_for_help(tp: Any, name: str = "") -> str:
    """A setting's type as ``--help`` shows it to a user: ``int``, ``path`` (a string setting
    named like one), ``list of str``, ``str or int``, with ``, optional`` where None is
    allowed, instead of Python's ``Optional[...]`` / ``Union[...]``."""
    import types
    import typing
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = " or ".join(type_for_help(a, name) for a in rest)
        return f"{inner}, optional" if len(rest) < len(args) else inner
    if origin in (list, tuple, set, frozenset):
        return "list of " + (type_for_help(args[0]) if args else "values")
    if origin is dict or tp is dict:
        return "mapping"
    if tp is str and name.endswith(PATH_NAMES):
        return "path"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def inside(root: str | os.PathLike, rel: str, key: str, source: str | None = None) -> Path:
    """``root/rel`` for a path a config names inside a folder: refused when ``rel`` is absolute,
    holds '..', or resolves (through a symbolic link) outside ``root``."""
    where = f"{source}: " if source else ""
    p = PurePath(rel or "")
    if not rel or p.is_absolute() or "\\" in rel or ".." in p.parts:
        raise ConfigError(f"{where}'{key}' must be a relative path inside {root} (not absolute, no '..'), got {rel!r}")
    path = Path(root) / rel
    if not is_within(path, Path(root)):
        raise ConfigError(f"{where}'{key}' {rel!r} leads outside {root} through a symbolic link (to {path.resolve()})")
    return path


def date_range(cfg: BaseConfig, first: str = "first_date", last: str = "last_date") -> DateRange:
    """The :class:`~simtune.io.DateRange` a config's ``first``/``last`` keys give; ConfigError naming
    the key when a bound is not a date or the range is empty."""
    try:
        return DateRange.parse(getattr(cfg, first), getattr(cfg, last))
    except ValueError as e:
        raise ConfigError(f"{cfg.source_of(first)}: '{first}'/'{last}': {e}") from None


DATES_HELP = ("accepted dates of the corpus, from first_date to last_date (YYYY-MM-DD; 'today' = the day the "
              "command runs); a record dated outside is rejected as bad_date")


def check_output_folder(cfg: BaseConfig, key: str, command: str, inputs: dict | None = None) -> None:
    """``cfg.<key>`` is a folder ``command`` replaces as a whole (written beside it, renamed into
    place). Refused, before any work, unless :func:`simtune.io.replace_refusal` allows it (absent,
    empty, or an earlier output of the same command holding nothing else), and when it is, holds
    or lies inside one of the ``inputs`` (``{key: path or list of paths}``), links followed."""
    v = getattr(cfg, key)
    out = Path(v).expanduser()
    why = input_overlap(out, inputs or {}) or replace_refusal(out, command)
    if why:
        raise ConfigError(f"{cfg.source_of(key)}: '{key}' {v!r} {why}; the folder is replaced as a whole: "
                          f"delete it yourself or choose a new folder")
    why = output_place_problem(out)
    if why:
        raise ConfigError(f"{cfg.source_of(key)}: '{key}' {v!r} {why}")
