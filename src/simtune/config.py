"""Typed configs: dataclasses with defaults and help, read from YAML, overridable on the
command line (``--learning_rate 2e-5`` or ``--learning_rate=2e-5``).

Copied habits: TRL's one-dataclass-per-trainer with a help string on every field, and
TrlParser / LLaMA-Factory's "YAML file, then any key from the command line". Unknown keys,
wrong types, values out of range and missing required fields raise :class:`ConfigError`
naming the key and where it came from (the file, or "command line").

This module is the reader (:class:`BaseConfig`, :func:`opt`). The training stages' configs
and the registry of config kinds are in :mod:`simtune.stage_configs`; the path and date
checks in :mod:`simtune.config_paths`.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import reprlib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml



class ConfigError(ValueError):
    """A bad configuration value; the message names the key and the source."""


def opt(default: Any = None, help: str = "", *, choices: list | None = None, min: float | None = None,
        max: float | None = None, required: bool = False):
    """A config field with a help string and optional validation."""
    md = {"help": help, "choices": choices, "min": min, "max": max, "required": required}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=md)
    return field(default=default, metadata=md)


_MISSING_SOURCE = "defaults"

# What a config may hold once its YAML aliases are expanded (each use of an alias counted
# again): a "billion laughs" file of a few lines expands to gigabytes.
MAX_CONFIG_VALUES = 100_000   # scalars, lists and mappings
MAX_CONFIG_CHARS = 16 << 20   # characters of all strings
MAX_CONFIG_BYTES = 16 << 20   # size of a config file
INT_RANGE = (-(1 << 63), (1 << 63) - 1)  # what an integer setting may be (a 64-bit integer)

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict = 3, 6, 6, 6
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 80, 80, 40


def shown(value: Any) -> str:
    """``repr(value)`` cut for a message: a few items per level, a few levels, 120 characters at
    most (a value may be huge: a long string, or a YAML alias bomb)."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def check_yaml_size(data: Any, source: str) -> None:
    """Refuse (ConfigError) YAML that expands to more than :data:`MAX_CONFIG_VALUES` values or
    :data:`MAX_CONFIG_CHARS` characters, aliases counted each time they are used. Stops as
    soon as a bound is passed, so a bomb costs no more than the bound."""
    n = chars = 0
    stack = [data]
    while stack:
        x = stack.pop()
        n += 1
        if isinstance(x, str):
            chars += len(x)
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        if n > MAX_CONFIG_VALUES or chars > MAX_CONFIG_CHARS:
            raise ConfigError(f"{source}: the YAML expands to more than {MAX_CONFIG_VALUES:,} values or "
                              f"{MAX_CONFIG_CHARS >> 20} MiB of text (aliases counted each time they are used); "
                              f"refused")


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load(text)`` within the bounds of :func:`check_yaml_size`; any failure is a
    ConfigError naming ``source``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {str(e)[:300]}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    check_yaml_size(data, source)
    return data


class _Flag:
    """A bare ``--flag`` on the command line (no value)."""

    def __repr__(self) -> str:
        return "FLAG"


FLAG = _Flag()


def _integer(value: Any) -> int | None:
    """An int from an int, a whole float or a digit string; None otherwise (a bool too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    """A float from a number or a numeric string; None otherwise (a bool too). ``nan`` and
    ``inf`` come back as they are: the caller refuses them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            return math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Coerce ``value`` (from YAML or a command-line string) to the annotated type."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null", "~") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, source)
            except ConfigError as e:
                errors.append(str(e))
        wants = [e.split(" must be ", 1)[1].rsplit(", got ", 1)[0] for e in errors if " must be " in e]
        if len(wants) > 1:  # e.g. true, false or auto
            raise ConfigError(f"{source}: '{key}' must be {' or '.join(wants)}, got {shown(value)}")
        raise ConfigError(errors[0] if errors else f"{source}: '{key}': bad value {shown(value)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{source}: '{key}' must be one of {list(args)}, got {shown(value)}")
    if origin in (list, tuple):
        if isinstance(value, str):
            s = value.strip()
            value = load_yaml(s, f"{source}: '{key}'") if s.startswith("[") else [v.strip() for v in s.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        return [_coerce(v, inner, key, source) for v in value]
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = load_yaml(value, f"{source}: '{key}'")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' must be a mapping, got {shown(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{source}: '{key}' must be true or false, got {shown(value)}")
    if tp is int:
        v = _integer(value)
        if v is None:
            raise ConfigError(f"{source}: '{key}' must be an integer, got {shown(value)}")
        if not INT_RANGE[0] <= v <= INT_RANGE[1]:
            raise ConfigError(f"{source}: '{key}' must be an integer of at most 64 bits, got {shown(value)}")
        return v
    if tp is float:
        v = _number(value)
        if v is None:
            raise ConfigError(f"{source}: '{key}' must be a number, got {shown(value)}")
        if not math.isfinite(v):
            raise ConfigError(f"{source}: '{key}' must be a finite number (not nan or infinity), got {shown(value)}")
        return v
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: '{key}' must be a string, got {shown(value)}")
    return value


def split_config_arg(argv: list[str]) -> tuple[Optional[str], list[str]]:
    """Take ``--config FILE`` (or ``--config=FILE``) out of a command line."""
    rest: list[str] = []
    path = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("command line: '--config' needs a file")
            path = argv[i + 1]
            i += 2
            continue
        if a.startswith("--config="):
            path = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    return path, rest


def parse_overrides(argv: list[str]) -> list[tuple[str, Optional[str]]]:
    """``['--a', '1', '--b=2', '--flag']`` -> ``[('a','1'), ('b','2'), ('flag', None)]``."""
    out: list[tuple[str, Optional[str]]] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"command line: expected --key value, got {tok!r}")
        key = tok[2:]
        if "=" in key:
            key, val = key.split("=", 1)
            out.append((key.replace("-", "_"), val))
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append((key.replace("-", "_"), argv[i + 1]))
            i += 2
        else:
            out.append((key.replace("-", "_"), FLAG))  # bare flag
            i += 1
    return out


def read_config_text(path: str | os.PathLike) -> str:
    """The text of a config file; ConfigError when it is not a readable file of UTF-8 text of at most
    :data:`MAX_CONFIG_BYTES`."""
    from simtune.io import input_file_problem
    why = input_file_problem(path)
    if why:
        raise ConfigError(f"{path}: config file {why}")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: a config file may hold at most {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file (byte {e.start} is not UTF-8)") from None


@dataclass
class BaseConfig:
    """Base of every config: YAML + command-line loading, validation, saving."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _unknown(cls, key: str, source: str) -> ConfigError:
        near = difflib.get_close_matches(key, cls.field_names(), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        return ConfigError(f"{source}: unknown key '{key}' for {cls.__name__}{hint}")

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>", overrides: dict[str, tuple[Any, str]] | None = None):
        hints = typing.get_type_hints(cls)
        names = set(cls.field_names())
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key, val in (data or {}).items():
            if key not in names:
                raise cls._unknown(key, source)
            values[key] = _coerce(val, hints[key], key, source)
            sources[key] = source
        for key, (val, src) in (overrides or {}).items():
            if key not in names:
                raise cls._unknown(key, src)
            tp = hints[key]
            if val is FLAG:
                if tp is not bool and not (get_origin(tp) in (Union, types.UnionType) and bool in get_args(tp)):
                    raise ConfigError(f"{src}: '--{key}' needs a value")
                val = True
            values[key] = _coerce(val, tp, key, src)
            sources[key] = src
        cfg = cls(**values)
        cfg._sources = sources  # type: ignore[attr-defined]
        cfg._file = source  # type: ignore[attr-defined]
        cfg.validate()
        return cfg

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, argv: list[str] | None = None, **kwargs):
        """Read ``path`` (YAML), then apply command-line ``argv`` overrides, then ``kwargs``."""
        data: dict = {}
        source = "defaults"
        if path is not None:
            source = str(path)
            data = load_yaml(read_config_text(path), source) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: the top level must be a mapping of key: value")
        overrides: dict[str, tuple[Any, str]] = {}
        for key, val in parse_overrides(list(argv or [])):
            overrides[key] = (val, "command line")
        for key, val in kwargs.items():
            overrides[key] = (val, "keyword argument")
        return cls.from_dict(data, source=source, overrides=overrides)

    @classmethod
    def print_help_if_asked(cls, argv: list[str], usage: str | None = None) -> bool:
        """Print the usage and every option when argv holds -h / --help; say whether it did."""
        if not any(a in ("-h", "--help") for a in argv):
            return False
        head = usage or f"{(cls.__doc__ or '').strip()}\n\nusage: [--config FILE] [--key value ...]"
        print(f"{head}\n\noptions (YAML keys or --key value):\n{cls.help_text()}")
        return True

    @classmethod
    def from_argv(cls, argv: list[str], usage: str | None = None, **kwargs):
        """A command's config from its command line: ``[--config FILE] [--key value ...]``.
        Prints the usage and every option and returns None for ``-h`` / ``--help``."""
        if cls.print_help_if_asked(argv, usage):
            return None
        path, rest = split_config_arg(list(argv))
        return cls.load(path, rest, **kwargs)

    def source_of(self, key: str) -> str:
        """Where a key's value came from: the file, "command line", or the file for defaults."""
        return getattr(self, "_sources", {}).get(key, getattr(self, "_file", _MISSING_SOURCE))

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            val = getattr(self, f.name)
            md = f.metadata
            src = self.source_of(f.name)
            if md.get("required") and (val is None or val == ""):
                raise ConfigError(f"{src}: required key '{f.name}' is missing ({md.get('help', '')})")
            if val is None:
                continue
            if md.get("choices") is not None:
                vals = val if isinstance(val, list) else [val]
                for v in vals:
                    if v not in md["choices"]:
                        raise ConfigError(f"{src}: '{f.name}' must be one of {md['choices']}, got {shown(v)}")
            if md.get("min") is not None and isinstance(val, (int, float)) and val < md["min"]:
                raise ConfigError(f"{src}: '{f.name}' must be >= {md['min']}, got {shown(val)}")
            if md.get("max") is not None and isinstance(val, (int, float)) and val > md["max"]:
                raise ConfigError(f"{src}: '{f.name}' must be <= {md['max']}, got {shown(val)}")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def help_text(cls) -> str:
        from simtune.config_paths import type_for_help
        hints = typing.get_type_hints(cls)
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            req = " (required)" if f.metadata.get("required") else ""
            rows.append(f"  --{f.name} {type_for_help(hints[f.name], f.name)} = {default!r}{req}\n      {f.metadata.get('help', '')}")
        return "\n".join(rows)


# --------------------------------------------------------------------------- names

def check_plain_name(cfg: BaseConfig, key: str) -> None:
    """``cfg.<key>`` becomes one folder name under an output folder: no separators, not . or .."""
    v = getattr(cfg, key)
    if not v or "/" in v or "\\" in v or "\0" in v or v in (".", ".."):
        raise ConfigError(f"{cfg.source_of(key)}: '{key}' must be a plain name (no path separators, not '.' or "
                          f"'..'), got {v!r}: it names a folder inside the output folder")
