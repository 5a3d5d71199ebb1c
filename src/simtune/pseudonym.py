"""Pseudonymised user ids: ``u_`` + the first 16 hex digits of HMAC-SHA256(salt, id);
post, comment and repost ids: ``p_`` + 16 hex digits of HMAC-SHA256(salt, "post" NUL id)
(a public post id leads back to its author, so it is hidden too).

The same salt gives an id the same pseudonym in every file of a run and in every run;
without the salt a pseudonym can neither be reversed nor checked against a guessed id
(plain hashes of numeric Weibo ids could be, by trying them all). The salt never enters
an output: it comes from ``salt_file`` (created with a random salt, mode 0600, when
missing), else from the environment variable ``SIMTUNE_PSEUDONYM_SALT``, else from
``~/.config/simtune/pseudonym_salt`` (created the same way). Outputs record only a
fingerprint of it (an HMAC of a fixed string), so two runs can be checked for the same salt.

``pseudonymize: auto`` (the default of the data commands) is on unless every input is
known to be synthetic: the shipped review example, or a corpus written by
``simtune data social synth``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Iterable

from simtune.config import ConfigError, is_within

PREFIX = "u_"
POST_PREFIX = "p_"
HEX_DIGITS = 16
SALT_ENV = "SIMTUNE_PSEUDONYM_SALT"
MIN_SALT_CHARS = 16
PSEUDONYMIZE_HELP = ("replace user ids and names (u_ + 16 hex digits) and post ids (p_ + 16 hex) by salted hashes in "
                     "every output: true, false, "
                     "or auto = true unless every input is known synthetic (the shipped example, `data social synth`)")
SALT_FILE_HELP = (f"file holding the secret salt for pseudonymize, outside the outputs (created with a random salt, "
                  f"mode 0600, when missing); default: ${SALT_ENV} if set, else ~/.config/simtune/pseudonym_salt")


def default_salt_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "simtune" / "pseudonym_salt"


def _check_salt(text: str, where: str) -> bytes:
    salt = text.strip()
    if len(salt) < MIN_SALT_CHARS:
        raise ConfigError(f"{where}: the pseudonymisation salt must have at least {MIN_SALT_CHARS} characters")
    return salt.encode("utf-8")


def read_or_create_salt(path: str | os.PathLike) -> bytes:
    """The salt in ``path``; a new random one (64 hex digits, mode 0600) when it is missing.
    Several processes starting together agree: the file is linked into place only if absent."""
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: then theirs is used
            print(f"simtune: wrote a new random pseudonymisation salt to {path} (mode 0600). Keep it, and keep it "
                  f"out of shared folders: the same salt gives the same pseudonyms in later runs.", file=sys.stderr)
        except FileExistsError:
            pass
        finally:
            os.remove(tmp)
    elif path.stat().st_mode & 0o077:
        print(f"simtune: warning: the salt file {path} can be read by other users (chmod 600 it)", file=sys.stderr)
    try:
        return _check_salt(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the pseudonymisation salt: {e}") from None


class Pseudonymizer:
    """``pz(raw_id) -> "u_<16 hex>"``, cached; two ids meeting in one pseudonym is an error."""

    def __init__(self, salt: bytes):
        self._salt = salt
        self._cache: dict[str, str] = {}
        self._taken: set[str] = set()
        self._post_mac = hmac.new(salt, b"post\0", hashlib.sha256)

    def post(self, raw: str) -> str:
        """``p_<16 hex>`` for a post, comment or repost id. Not cached (ids of posts are
        many and seldom repeat: a cache would grow with the corpus); 64 bits make a clash
        between two of 10 million ids a chance of about 3 in 1,000,000."""
        h = self._post_mac.copy()
        h.update(raw.encode("utf-8"))
        return POST_PREFIX + h.hexdigest()[:HEX_DIGITS]

    def __call__(self, raw: str) -> str:
        p = self._cache.get(raw)
        if p is None:
            p = PREFIX + hmac.new(self._salt, raw.encode("utf-8"), hashlib.sha256).hexdigest()[:HEX_DIGITS]
            if p in self._taken:
                raise ValueError(f"two user ids share the pseudonym {p}; raise pseudonym.HEX_DIGITS")
            self._taken.add(p)
            self._cache[raw] = p
        return p

    @property
    def fingerprint(self) -> str:
        """Equal for equal salts; tells nothing about the salt itself."""
        return hmac.new(self._salt, b"simtune salt fingerprint", hashlib.sha256).hexdigest()[:12]


def from_config(cfg, synthetic: bool, out_dirs: Iterable[str | os.PathLike]) -> Pseudonymizer | None:
    """The pseudonymizer a config asks for (``pseudonymize``, ``salt_file``), or None.
    ``synthetic``: every input is known synthetic (what ``auto`` turns off for)."""
    on = cfg.pseudonymize if cfg.pseudonymize != "auto" else not synthetic
    if not on:
        return None
    if cfg.salt_file:
        path = Path(cfg.salt_file)
    elif os.environ.get(SALT_ENV):
        return Pseudonymizer(_check_salt(os.environ[SALT_ENV], f"environment variable {SALT_ENV}"))
    else:
        path = default_salt_file()
    for d in out_dirs:
        if d and is_within(path, Path(d)):
            raise ConfigError(f"{cfg.source_of('salt_file')}: 'salt_file' {path} is inside the output folder {d}; "
                              f"keep the salt outside every output")
    return Pseudonymizer(read_or_create_salt(path))


def is_synthetic_social_input(path: str | os.PathLike) -> bool:
    """A file written by ``simtune data social synth`` (its folder's summary.json says so)."""
    s = Path(path).parent / "summary.json"
    try:
        return json.loads(s.read_text(encoding="utf-8")).get("command") == "data social synth"
    except (OSError, ValueError, AttributeError):
        return False
