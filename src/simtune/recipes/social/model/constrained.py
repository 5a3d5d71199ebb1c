"""Constrained decoding of social answers: the model can only write a well-formed answer.

A logits processor that masks, at every step, the tokens that would leave the answer
grammar

    [ {"user":"<candidate>","action":"comment|repost","text":"<free text>"} , ... ]

so that every answer parses, names only users from the prompt's candidate pool, never
names a user twice, and (when the samples list reactors in candidate order) names them in
pool order. Free text may use any token without a quote, backslash or line break; a text
longer than ``max_text_chars`` is closed; when few tokens are left the answer is closed
so it is never cut in the middle. The choice of *who* stays the model's: the mask only
removes impossible continuations.

How: the processor decodes each row's generated tokens, walks the grammar to find the
state, and allows the tokens whose text is a prefix of one of the state's legal
continuations (a token may span several pieces, e.g. ``?"`` + ``},`` + ``{"``). Works for
byte-level BPE tokenizers (Qwen2.5, Llama 3, SmolLM2), whose tokens decode independently.
"""
from __future__ import annotations

from typing import Sequence

from simtune.recipes.social.schema import ACTIONS

OPEN = '{"user":"'
AFTER_USER = '","action":"'
AFTER_ACTION = '","text":"'
CLOSE = '"}'


_VOCAB_CACHE: dict = {}


class _Vocab:
    """Per tokenizer: every token's text, text -> ids, the free-text mask and the tokens
    holding a quote (split as free text + quoted rest)."""

    def __init__(self, tok):
        import torch

        n = len(tok)
        special = set(getattr(tok, "all_special_ids", []) or [])
        self.strs = [tok.decode([i], clean_up_tokenization_spaces=False) for i in range(n)]
        self.by_str: dict[str, list[int]] = {}
        plain = torch.zeros(n, dtype=torch.bool)
        self.quoted: list[tuple[int, str]] = []
        for i, s in enumerate(self.strs):
            if i in special or not s:
                continue
            self.by_str.setdefault(s, []).append(i)
            if any(c in s for c in '\\\n\r\t'):
                continue
            q = s.find('"')
            if q < 0:
                plain[i] = True
            else:
                self.quoted.append((i, s[q:]))
        self.plain = plain
        self.size = n


def vocab_of(tok) -> _Vocab:
    key = (getattr(tok, "name_or_path", ""), len(tok), id(tok))
    v = _VOCAB_CACHE.get(key)
    if v is None:
        _VOCAB_CACHE.clear()
        v = _VOCAB_CACHE[key] = _Vocab(tok)
    return v


def legal_next(g: str, cands: Sequence[str], ordered: bool, closing: bool, max_text_chars: int):
    """The grammar state after the generated text ``g``.

    Returns ``(options, in_text)``: ``options`` = the strings one of which must come next
    (a token may cover a prefix of one), ``in_text`` = inside a free text (any plain token
    is legal too). ``options == []`` and ``in_text is None`` means the answer is complete
    (only end of sequence is legal); ``None`` means ``g`` left the grammar."""
    pos, first, last, used = 0, True, -1, set()
    n = len(g)
    while True:
        avail = [c for k, c in enumerate(cands) if c not in used and (not ordered or k > last)]
        head, sep = ("[", "") if first else (CLOSE, ",")
        end = "[]" if first else CLOSE + "]"
        items = [head + sep + OPEN + c + AFTER_USER for c in avail]
        rest = g[pos:]
        if rest.startswith(end):
            return ([], None) if len(rest) == len(end) else None
        hit = next((o for o in items if rest.startswith(o)), None)
        if hit is None:
            if closing and end.startswith(rest):  # few tokens left: no new item
                return [end[len(rest):]], False
            opts = [o[len(rest):] for o in [end] + items if o.startswith(rest)]
            return (opts, False) if opts else None
        user = hit[len(head) + len(sep) + len(OPEN):-len(AFTER_USER)]
        used.add(user)
        last = cands.index(user)
        first = False
        pos += len(hit)
        rest = g[pos:]
        acts = [a + AFTER_ACTION for a in ACTIONS]
        hit = next((o for o in acts if rest.startswith(o)), None)
        if hit is None:
            opts = [o[len(rest):] for o in acts if o.startswith(rest)]
            return (opts, False) if opts else None
        pos += len(hit)
        q = g.find('"', pos)
        if q < 0:  # inside the text: plain tokens, or close it (a token may hold text + quote)
            closes = [CLOSE + "]"]
            if not closing:
                after = [c for k, c in enumerate(cands) if c not in used and (not ordered or k > last)]
                closes += [CLOSE + "," + OPEN + c + AFTER_USER for c in after]
            return closes, not closing and (n - pos) < max_text_chars
        pos = q


class AnswerConstraint:
    """A ``transformers`` logits processor; one per generate call.

    ``rows[i]`` = the candidate ids of batch row ``i`` (rows of one prompt repeated when it
    has several return sequences); ``width`` = the (left-padded) prompt length; ``given[i]``
    = the start of row ``i``'s answer when the prompt already holds it (the candidate
    scorer gives ``[{"user":"<id>","action":"``)."""

    def __init__(self, tok, rows: Sequence[Sequence[str]], width: int, *, ordered: Sequence[bool] | bool = False,
                 max_new_tokens: int = 256, max_text_chars: int = 120, reserve_tokens: int = 24,
                 eos_ids: Sequence[int] = (), given: Sequence[str] | None = None):
        self.tok = tok
        self.v = vocab_of(tok)
        self.rows = [list(r) for r in rows]
        self.ordered = [ordered] * len(rows) if isinstance(ordered, bool) else list(ordered)
        self.width = width
        self.given = list(given) if given is not None else [""] * len(self.rows)  # answer text already in the prompt
        self.max_new_tokens = max_new_tokens
        self.max_text_chars = max_text_chars
        self.reserve = reserve_tokens
        eos = set(eos_ids)
        if tok.eos_token_id is not None:
            eos.add(tok.eos_token_id)
        self.eos = sorted(eos)

    def _allowed(self, g: str, r: int, step: int) -> tuple[list[int], bool]:
        """The legal token ids after ``g``, and whether any plain text token is legal too."""
        closing = self.max_new_tokens - step <= self.reserve
        st = legal_next(g, self.rows[r], self.ordered[r], closing, self.max_text_chars)
        if st is None:  # left the grammar (a decoding quirk): end the answer there
            return self.eos, False
        opts, in_text = st
        if in_text is None:
            return self.eos, False
        by_str = self.v.by_str
        ids = set()
        prefixes = set()
        for o in opts:
            for k in range(1, len(o) + 1):
                p = o[:k]
                prefixes.add(p)
                ids.update(by_str.get(p, ()))
        if in_text:  # in a text: text + quote tokens such as '?"' or '."}'
            ids.update(i for i, q in self.v.quoted if q in prefixes)
        return list(ids), bool(in_text)

    def __call__(self, input_ids, scores):
        import torch

        step = input_ids.shape[1] - self.width
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for r in range(input_ids.shape[0]):
            ids = input_ids[r, self.width:].tolist()
            g = self.given[r] + self.tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            allowed, text_open = self._allowed(g, r, step)
            if allowed:
                mask[r, allowed] = True
            if text_open:
                n = min(self.v.size, scores.shape[1])
                mask[r, :n] |= self.v.plain[:n].to(mask.device)
        return scores.masked_fill(~mask, float("-inf"))


def answer_constraint_factory(tok, candidates: Sequence[Sequence[str]], prompts: Sequence[str], *,
                              max_new_tokens: int, max_text_chars: int = 120, eos_ids: Sequence[int] = ()):
    """For :func:`simtune.generation.generate`: ``(prompt indices of the batch rows, prompt
    width) -> AnswerConstraint``."""
    from simtune.recipes.social.prompt import answer_order_of
    ordered = [answer_order_of(p) == "pool" for p in prompts]

    def make(row_prompts: Sequence[int], width: int) -> AnswerConstraint:
        return AnswerConstraint(tok, [candidates[i] for i in row_prompts], width,
                                ordered=[ordered[i] for i in row_prompts], max_new_tokens=max_new_tokens,
                                max_text_chars=max_text_chars, eos_ids=eos_ids)

    return make


def eos_ids(model) -> list[int]:
    """The model's end-of-sequence ids (its generation config may list several)."""
    e = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if e is None:
        return []
    return [int(x) for x in (e if isinstance(e, (list, tuple)) else [e])]
