"""Batched generation: the one path used by predict, evaluation, simulation and rollouts.

Prompts are sorted by length and generated in left-padded batches (less padding, fewer
forward passes than one prompt at a time); results come back in the caller's order.
A prompt is a plain string (wrapped as one user message through the chat template), a
list of chat messages, or a list of token ids (sent as they are); ``use_chat_template=False``
sends strings as they are.

Several samples of one prompt (``num_return_sequences``, a GRPO group) share one prefill:
:func:`generate_ids` runs the prompts once, repeats their KV cache for each sample and
lets ``model.generate`` go on from it. (``generate(num_return_sequences=n)`` alone copies
the prompt n times *before* its first forward pass, so the prompt is computed n times.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

Prompt = Union[str, list]


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1
    use_chat_template: bool = True
    system_prompt: str | None = None
    repetition_penalty: float = 1.0      # > 1 discourages tokens already in the prompt or the output
    no_repeat_ngram_size: int = 0        # > 0: no n-gram of this size twice in the output


def render_prompt(tok, prompt: Prompt, use_chat_template: bool = True, system_prompt: str | None = None) -> str:
    if isinstance(prompt, str) and not use_chat_template:
        return prompt
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system_prompt and (not msgs or msgs[0].get("role") != "system"):
        msgs = [{"role": "system", "content": system_prompt}] + msgs
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _is_ids(p) -> bool:
    return isinstance(p, (list, tuple)) and bool(p) and isinstance(p[0], int)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int):
    """Token id lists -> (ids, attention mask), left-padded so that every prompt ends at the
    last column."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, width - len(seq):] = 1
    return ids, mask


def generate_ids(model, ids, mask, n: int = 1, **kw):
    """``model.generate`` of ``n`` sequences per row of a left-padded batch (rows in order,
    each repeated n times, as ``num_return_sequences=n`` gives), with one prefill per row:
    all prompt tokens but the last go through the model once, the KV cache is repeated n
    times, and generation goes on from it (the last prompt token is then run per sample, to
    get each sample's first logits). Call under ``torch.no_grad()``."""
    if n == 1 or ids.shape[1] < 2:
        return model.generate(input_ids=ids, attention_mask=mask, num_return_sequences=n, **kw)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # what generate derives from the mask
    extra = {"logits_to_keep": 1} if model._supports_logits_to_keep() else {}
    cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1], use_cache=True,
                  **extra).cache
    cache.batch_repeat_interleave(n)
    return model.generate(input_ids=ids.repeat_interleave(n, dim=0), attention_mask=mask.repeat_interleave(n, dim=0),
                          cache=cache, **kw)


class OutputNoRepeatNGram:
    """No n-gram twice *in the output*. transformers' ``no_repeat_ngram_size`` also counts
    the prompt, so a model could never quote its prompt, and with byte-level tokens (SmolLM2
    spends 2-3 on a Chinese character) n = 3 bans every such character the prompt holds."""

    def __init__(self, n: int, width: int):
        self.n, self.width = n, width

    def __call__(self, input_ids, scores):
        n = self.n
        for row, seq in enumerate(input_ids[:, self.width:].tolist()):
            if len(seq) < n:
                continue
            tail = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
            banned = [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == tail]
            if banned:
                scores[row, banned] = float("-inf")
        return scores


def generate(model, tok, prompts: Sequence[Prompt], cfg: GenerationConfig | None = None,
             constraint: Callable | None = None, **overrides) -> list:
    """Return one completion string per prompt (a list of ``num_return_sequences`` strings
    per prompt when that is > 1), in the order of ``prompts``.

    ``constraint(row_prompts, width)``, when given, returns a logits processor for one
    batch: ``row_prompts[r]`` is the index (in ``prompts``) of batch row ``r``, ``width``
    the left-padded prompt length (see simtune.recipes.social.model.constrained)."""
    import torch

    cfg = cfg or GenerationConfig()
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"generate() got an unknown option '{k}'")
        setattr(cfg, k, v)
    # special tokens are already in the rendered chat text
    add_special = not cfg.use_chat_template
    encoded = [list(p) if _is_ids(p) else
               tok(render_prompt(tok, p, cfg.use_chat_template, cfg.system_prompt), add_special_tokens=add_special)["input_ids"]
               for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    results: list = [None] * len(encoded)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            ids, mask = left_pad([encoded[i] for i in idx], pad_id)
            width = ids.shape[1]
            kw = dict(max_new_tokens=cfg.max_new_tokens, pad_token_id=pad_id, do_sample=cfg.do_sample)
            if cfg.repetition_penalty != 1.0:
                kw["repetition_penalty"] = cfg.repetition_penalty
            if cfg.do_sample:
                kw.update(temperature=cfg.temperature, top_p=cfg.top_p)
            else:
                kw.update(temperature=None, top_p=None, top_k=None)
            processors = [OutputNoRepeatNGram(cfg.no_repeat_ngram_size, width)] if cfg.no_repeat_ngram_size else []
            if constraint is not None:
                rows = [i for i in idx for _ in range(cfg.num_return_sequences)]
                processors.append(constraint(rows, width))
            if processors:
                from transformers import LogitsProcessorList
                kw["logits_processor"] = LogitsProcessorList(processors)
            with torch.no_grad():
                out = generate_ids(model, ids.to(device), mask.to(device), cfg.num_return_sequences, **kw)
            new = out[:, width:]
            decoded = tok.batch_decode(new, skip_special_tokens=True)
            n = cfg.num_return_sequences
            for row, i in enumerate(idx):
                chunk = decoded[row * n:(row + 1) * n]
                results[i] = chunk if n > 1 else chunk[0]
    finally:
        model.train(was_training)
    return results
