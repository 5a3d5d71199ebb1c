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
known to be synthetic: the shipped review example, or a file written by
``simtune data social synth`` (proved by the SHA-256 of its content, which ``synth``
records in its summary.json; a file beside it proves nothing).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Iterable, Mapping

from simtune.config import ConfigError
from simtune.io import is_within

PREFIX = "u_"
POST_PREFIX = "p_"
HEX_DIGITS = 16
SALT_ENV = "SIMTUNE_PSEUDONYM_SALT"
MIN_SALT_CHARS = 16
PSEUDONYMIZE_HELP = ("replace user ids and names (u_ + 16 hex digits) and post ids (p_ + 16 hex) by salted hashes in "
                     "every output: true, false, "
                     "or auto = true unless every input is known synthetic (the shipped example, `data social synth`)")
SCRUB_MENTIONS_HELP = ("rewrite @mentions in texts: a mention of a known user becomes @ + that user's id as written "
                       "(the pseudonym), any other mention @[someone]: true, false, or auto = as pseudonymize")
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


# --------------------------------------------------------------------------- @mentions

# A mention: "@" and a name of word characters (CJK included) and "-", up to 30 of them; not
# an e-mail address (an ASCII name right after an ASCII letter or digit: a@b.com).
MENTION = re.compile(r"@([\w\-]{1,30})")
MENTION_PLACEHOLDER = "@[someone]"
_ASCII_WORD = re.compile(r"[A-Za-z0-9_\-]")


def add_name(names: dict[str, str | None], name: object, uid: str) -> None:
    """Record that the user ``uid`` (as written) goes by ``name``; a name two users go by maps
    to None (whom it means is not known)."""
    if isinstance(name, str) and name:
        names[name] = uid if names.get(name, uid) == uid else None


class MentionScrubber:
    """``scrub(text, names)``: every @mention in ``text`` rewritten. A mention of a known user
    (by a name in ``names``, then in the scrubber's own ``known``: name -> id as written, None
    when the name is ambiguous) becomes ``@`` + that id, the rest of the mention kept
    (``@Alice你好`` -> ``@u_…你好``: the longest known name that starts the mention wins);
    any other mention becomes :data:`MENTION_PLACEHOLDER` (the whole run of name characters:
    where an unknown name ends cannot be told)."""

    def __init__(self, known: Mapping[str, str | None] | None = None):
        self.known = dict(known or {})
        self.counts: dict[str, int] = {"mentions_to_user": 0, "mentions_to_placeholder": 0}

    def take_counts(self) -> dict[str, int]:
        """Mentions rewritten since the last call (then reset): to a user's id, to the placeholder."""
        c, self.counts = self.counts, dict.fromkeys(self.counts, 0)
        return c

    def __call__(self, text: str, names: Mapping[str, str | None] | None = None) -> str:
        if "@" not in text:
            return text
        names = names or {}

        def one(m: re.Match) -> str:
            run = m.group(1)
            if m.start() and run.isascii() and _ASCII_WORD.match(text, m.start() - 1):
                return m.group(0)  # an e-mail address, not a mention
            return self._replace(run, names)
        return MENTION.sub(one, text)

    def _replace(self, run: str, names: Mapping[str, str | None]) -> str:
        for end in range(len(run), 0, -1):
            if end < len(run) and _ASCII_WORD.match(run, end - 1) and _ASCII_WORD.match(run, end):
                continue  # a known name never ends inside an ASCII word ("Bob" is not "@Bob_x")
            name = run[:end]
            uid = names[name] if name in names else self.known.get(name)
            if uid:
                self.counts["mentions_to_user"] += 1
                return f"@{uid}{run[end:]}"
        self.counts["mentions_to_placeholder"] += 1
        return MENTION_PLACEHOLDER


def mention_summary(scrubbed: bool, counts: Mapping[str, int]) -> dict:
    """The ``mentions`` entry of a summary: whether @mentions were rewritten, and how many to a
    user's id and to the placeholder (``counts``: :meth:`MentionScrubber.take_counts`, summed)."""
    return {"scrubbed": scrubbed, "to_user": counts.get("mentions_to_user", 0),
            "to_placeholder": counts.get("mentions_to_placeholder", 0)}


def scrub_from_config(cfg, synthetic: bool) -> bool:
    """Whether a config asks for @mentions to be scrubbed (``scrub_mentions``; ``auto``: unless
    every input is known synthetic, as for pseudonyms)."""
    return cfg.scrub_mentions if cfg.scrub_mentions != "auto" else not synthetic


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_synthetic_social_input(path: str | os.PathLike) -> bool:
    """A file written by ``simtune data social synth``, as it wrote it: the summary.json that
    ``synth`` wrote beside it records this file's name with the SHA-256 of its content, and the
    content matches. A file the summary does not name (real data copied into the folder), or
    one changed since, is not synthetic: the folder proves nothing about its other files."""
    p = Path(path)
    try:
        s = json.loads((p.parent / "summary.json").read_text(encoding="utf-8"))
        want = s["sha256"][p.name] if s.get("command") == "data social synth" else None
        return isinstance(want, str) and p.is_file() and file_sha256(p) == want
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
