"""The social prompt and answer, in one place: every writer and reader of them imports this.

A prompt (:func:`build_prompt`) is plain text, one item a line:

    Predict which candidates react, and how.
    Post by <author>: <post text>
    [Thread:
    > <user> <commented|reposted>: <text>        (one line per message, root's reply first)
    Candidates (reacting to the last message):]  (else "Candidates:")
    <user id>: <candidate line>                   (one line per pool candidate)
    Answer with a JSON list ...                   (:data:`ANSWER_LINES`)

A candidate line is the user's static profile (:func:`static_line`) with, where activity is
known, ``; N earlier acts`` and for users without a profile their behaviour before the
sample (:class:`Behaviour`) and their latest earlier text (:func:`candidate_line`;
:func:`line_numbers` reads the numbers back). The answer is a JSON list ``[{"user", "action", "text"}]``
(:func:`format_answer`, read back by :func:`parse_answer`). :func:`parse_prompt` inverts
:func:`build_prompt`; :func:`split_prompt` cuts a prompt into the part before the pool,
the candidate lines and the rest, which is how the candidate scorer reads it
(``who.py``).
"""
from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Sequence

import orjson

from simtune.io import DataError
from simtune.recipes.social.schema import ACTIONS

POST_CHARS = 160      # post text shown in a prompt
CHAIN_CHARS = 80      # each thread message shown for deeper levels
PROFILE_CHARS = 64    # static profile text per candidate
SAID_CHARS = 30       # a profile-less user's latest earlier text

VERB = {"comment": "commented", "repost": "reposted", "post": "posted"}
_UNVERB = {v: k for k, v in VERB.items()}

FIRST_LINE = "Predict which candidates react, and how."
POST_PREFIX = "Post by "
CANDIDATES = "Candidates:"
CANDIDATES_THREAD = "Candidates (reacting to the last message):"
ANSWER_LINES = {
    "pool": 'Answer with a JSON list, in candidate order, of {"user": id, "action": "comment" or "repost", '
            '"text": ...} for each candidate who reacts; [] if nobody reacts.',
    "time": 'Answer with a JSON list ordered by time of {"user": id, "action": "comment" or "repost", '
            '"text": ...}; [] if nobody reacts.',
}
ANSWER_ORDERS = tuple(ANSWER_LINES)


def clip(text: str, n: int) -> str:
    """Whitespace runs as one space, then at most ``n`` characters (``…`` marks a cut)."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- candidate lines

def static_line(p: Any) -> str | None:
    """A user's profile (a dict as ``build`` stores it, or a string) as one short line;
    None when there is nothing to show. Interests and description first; location, gender
    and followers only when no interests are known."""
    if isinstance(p, str):
        return clip(p, PROFILE_CHARS) or None
    if not isinstance(p, dict):
        return None
    bits = []
    if p.get("interests"):
        bits.append("interests: " + ", ".join(map(str, p["interests"])))
    if isinstance(p.get("description"), str) and p["description"]:
        bits.append(p["description"])
    if not p.get("interests"):
        bits += [str(p[k]) for k in ("location", "gender") if p.get(k)]
        if "followers" in p:
            bits.append(f"{p['followers']} followers")
    return clip("; ".join(bits), PROFILE_CHARS) if bits else None


class Behaviour(NamedTuple):
    """A profile-less candidate's behaviour strictly before the sample's time, read from the
    build's activity (``samples.UserTable.behaviour``): what makes "who reacts" learnable on
    corpora where the same users recur (who-will-join benchmarks)."""
    days_since: float      # since the candidate's last act
    author: int            # cascades of this post's author the candidate reacted to
    alongside: int         # users present (the author, the thread) the candidate reacted alongside
    present: int           # how many users are present
    shared: int            # cascades the candidate shared with any of them


def behaviour_text(b: Behaviour) -> str:
    return (f"last {b.days_since:.1f} days ago; this author {b.author}x; "
            f"alongside {b.alongside}/{b.present} here {b.shared}x")


def candidate_line(static: str | None, n_before: int | None = None, said: str | None = None,
                   behaviour: Behaviour | None = None) -> str:
    """The text after ``<user id>: ``. ``n_before``: the user's acts strictly before the
    sample's time (None: activity unknown or left out); for a profile-less user, ``behaviour``
    (with ``n_before`` > 0) and ``said``, the latest earlier text."""
    if n_before is None:
        return static if static is not None else "no profile"
    if static is not None:
        return f"{static}; {n_before} earlier acts"
    line = f"no profile; {n_before} earlier acts"
    if behaviour is not None and n_before:
        line = f"{line}; {behaviour_text(behaviour)}"
    return f"{line}; said: {clip(said, SAID_CHARS)}" if said else line


class LineNumbers(NamedTuple):
    """The numbers a candidate line states (:func:`line_numbers`): ``acts`` None when the line
    gives no activity, ``behaviour`` None when it gives no behaviour."""
    acts: int | None
    behaviour: Behaviour | None


_ACTS_END = re.compile(r"; (\d+) earlier acts$")
_NO_PROFILE = re.compile(r"no profile; (\d+) earlier acts(?:; last (\d+(?:\.\d+)?) days ago; this author (\d+)x; "
                         r"alongside (\d+)/(\d+) here (\d+)x)?(?:$|; said: )")


def line_numbers(line: str) -> LineNumbers:
    """Read back the numbers :func:`candidate_line` wrote into ``line`` (the text after
    ``<user id>: ``): a profile-less line is read from its start (its ``said:`` text comes
    last and may hold anything), a profile line from its end (its profile comes first). A
    profile that itself ends in ``; N earlier acts``, shown with no activity known, reads as
    N acts: it is the same text."""
    m = _NO_PROFILE.match(line)
    if m:
        b = None
        if m.group(2) is not None:
            b = Behaviour(float(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)))
        return LineNumbers(int(m.group(1)), b)
    m = _ACTS_END.search(line)
    return LineNumbers(int(m.group(1)) if m else None, None)


def pool_numbers(lines: Sequence[str]) -> list[LineNumbers]:
    """What each pool line (``<user id>: <candidate line>``, :func:`split_prompt`'s) states."""
    return [line_numbers(ln.split(": ", 1)[1]) for ln in lines]


# --------------------------------------------------------------------------- prompts

def build_prompt(post_text: str, post_author: str, candidates: Sequence[tuple[str, str]],
                 chain: Sequence[dict] = (), post_chars: int = POST_CHARS, chain_chars: int = CHAIN_CHARS,
                 order: str = "pool") -> str:
    """The plain-text instruction for one node.

    ``candidates``: ``(user_id, candidate_line)`` in prompt order. ``chain``: the messages
    from the root's direct interactor down to the node being answered (empty at depth 0),
    each ``{"user", "action", "text"}``. ``order``: how the answer lists the reactors,
    ``pool`` (in candidate order: the model reads the pool once, top to bottom, deciding for
    each) or ``time`` (in the order they reacted)."""
    lines = [FIRST_LINE, f"{POST_PREFIX}{post_author}: {clip(post_text, post_chars) or '(no text)'}"]
    if chain:
        lines.append("Thread:")
        lines += [thread_line(c, chain_chars) for c in chain]
        lines.append(CANDIDATES_THREAD)
    else:
        lines.append(CANDIDATES)
    lines += [f"{uid}: {line}" for uid, line in candidates]
    lines.append(ANSWER_LINES[order])
    return "\n".join(lines)


def thread_line(c: dict, chain_chars: int = CHAIN_CHARS) -> str:
    return f"> {c['user']} {VERB.get(c['action'], c['action'])}: {clip(c.get('text') or '', chain_chars) or '(no text)'}"


def answer_order_of(prompt: str) -> str:
    """``pool`` or ``time``: the order a prompt built by :func:`build_prompt` asks for."""
    last = prompt.rsplit("\n", 1)[-1]
    return next((o for o, line in ANSWER_LINES.items() if last == line), "time")


_THREAD = re.compile(r"^> (\S+) (\S+): (.*)$")


def parse_prompt(prompt: str, where: str = "<prompt>") -> dict:
    """Read back what :func:`build_prompt` wrote: ``{post_text, post_author, candidates,
    chain, order}`` such that ``build_prompt(**parse_prompt(p)) == p``. Raises DataError."""
    def bad(reason: str):
        return DataError(where, None, "prompt", reason)

    lines = prompt.split("\n")
    if len(lines) < 4 or lines[0] != FIRST_LINE or not lines[1].startswith(POST_PREFIX) or ": " not in lines[1]:
        raise bad("not a social prompt (expected 'Predict which candidates react' then 'Post by AUTHOR: TEXT')")
    author, text = lines[1][len(POST_PREFIX):].split(": ", 1)
    i = 2
    chain = []
    if lines[i] == "Thread:":
        i += 1
        while i < len(lines) and lines[i].startswith("> "):
            m = _THREAD.match(lines[i])
            if not m:
                raise bad(f"bad thread line {lines[i]!r}")
            t = m.group(3)
            chain.append({"user": m.group(1), "action": _UNVERB.get(m.group(2), m.group(2)),
                          "text": "" if t == "(no text)" else t})
            i += 1
        if i >= len(lines) or lines[i] != CANDIDATES_THREAD:
            raise bad("thread not followed by the candidates header")
    elif lines[i] != CANDIDATES:
        raise bad("no candidates header")
    cands = []
    for ln in lines[i + 1:-1]:
        if ": " not in ln:
            raise bad(f"bad candidate line {ln!r}")
        uid, prof = ln.split(": ", 1)
        cands.append((uid, prof))
    out = {"post_text": "" if text == "(no text)" else text, "post_author": author, "candidates": cands,
           "chain": chain, "order": answer_order_of(prompt)}
    if build_prompt(**out) != prompt:
        raise bad("prompt does not round-trip through build_prompt (unexpected format)")
    return out


class PromptParts(NamedTuple):
    """A prompt cut around its pool: ``head + "\\n".join(lines) + tail == prompt``; ``head``
    ends with the candidates header and its line break, ``tail`` starts with a line break."""
    head: str
    lines: list[str]
    tail: str


def split_prompt(prompt: str, candidates: Sequence[str], where: str = "<prompt>") -> PromptParts:
    """Cut a :func:`build_prompt` prompt into the text before the pool, one line per
    candidate (``candidates`` in prompt order) and the answer instruction. Raises DataError
    when the lines do not name exactly those candidates in that order."""
    lines = prompt.split("\n")
    try:
        start = next(k for k, ln in enumerate(lines) if ln in (CANDIDATES, CANDIDATES_THREAD)) + 1
    except StopIteration:
        raise DataError(where, None, "prompt", "no candidates header in the prompt") from None
    end = start + len(candidates)
    pool = lines[start:end]
    if end >= len(lines) or any(not ln.startswith(f"{u}: ") for u, ln in zip(candidates, pool)):
        raise DataError(where, None, "prompt", f"the prompt's candidate lines do not list the {len(candidates)} "
                                               "candidates of the sample in order")
    return PromptParts("\n".join(lines[:start]) + "\n", pool, "\n" + "\n".join(lines[end:]))


# --------------------------------------------------------------------------- answers

def format_answer(users: Sequence[str], actions: Sequence[str], texts: Sequence[str]) -> str:
    return orjson.dumps([{"user": u, "action": a, "text": t} for u, a, t in zip(users, actions, texts)]).decode()


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_DECODER = json.JSONDecoder()


def _valid(obj: Any) -> list[dict] | None:
    if not isinstance(obj, list):
        return None
    out = []
    for e in obj:
        if not isinstance(e, dict):
            return None
        u, a, t = e.get("user"), e.get("action"), e.get("text", "")
        if isinstance(u, bool) or not isinstance(u, (str, int)) or (isinstance(u, str) and not u.strip()):
            return None
        if a not in ACTIONS or not isinstance(t, str):
            return None
        out.append({"user": str(u).strip(), "action": a, "text": t})
    return out


def parse_answer(text: Any) -> list[dict] | None:
    """A model's answer -> ``[{"user", "action", "text"}, ...]``, or None when it holds no
    JSON list of that shape. Tolerates surrounding prose and ```json fences; ``text`` may be
    left out (read as ""); ``user`` may be an integer (read as its string)."""
    if not isinstance(text, str):
        return None
    for c in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        c = c.strip()
        try:
            v = _valid(orjson.loads(c))
            if v is not None:
                return v
        except orjson.JSONDecodeError:
            pass
        start = c.find("[")
        tries = 0
        while start != -1 and tries < 20:
            tries += 1
            try:
                obj, _ = _DECODER.raw_decode(c, start)
                v = _valid(obj)
                if v is not None:
                    return v
            except json.JSONDecodeError:
                pass
            start = c.find("[", start + 1)
    return None
