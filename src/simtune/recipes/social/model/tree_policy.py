"""Tree GRPO's policy step: each completion's token log-probabilities under the policy, the
clipped policy loss per token with the trajectory's advantage, and the update over all the
nodes of a step's trajectories (micro-batched, ``num_iterations`` passes)."""
from __future__ import annotations


def completion_logps(model, batch: list[tuple[list[int], list[int]]], pad_id: int):
    """Per-token log-probs of each completion given its prompt: a list of 1-D tensors.

    Sequences are left-padded (position ids from the mask, as in generation) so every
    completion ends at the last column; only the last ``max completion + 1`` positions
    go through the LM head (``logits_to_keep``), not the whole prompt x vocabulary."""
    import torch

    device = next(model.parameters()).device
    width = max(len(p) + len(c) for p, c in batch)
    keep = max(len(c) for _, c in batch) + 1
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (p, c) in enumerate(batch):
        seq = p + c
        ids[i, width - len(seq):] = torch.tensor(seq)
        mask[i, width - len(seq):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                   logits_to_keep=keep, use_cache=False).logits            # [B, keep, V]: positions width-keep .. width-1
    out = []
    for i, (_, c) in enumerate(batch):
        # token t at column j is predicted at column j-1; completion columns: width-len(c) .. width-1
        lg = logits[i, keep - 1 - len(c):keep - 1].float()
        tgt = ids[i, width - len(c):].to(device)
        out.append(lg.gather(-1, tgt[:, None])[:, 0] - torch.logsumexp(lg, dim=-1))
    return out


def policy_loss(logp, old_logp, advantage: float, epsilon: float):
    """Clipped surrogate of one completion (``simtune.losses`` policy loss): ``(mean over its
    tokens of -min(r A, clip(r, 1-eps, 1+eps) A), share of its tokens whose clip was
    active)``, with ``r = exp(logp - old_logp)``."""
    import torch

    from simtune.losses import create_loss
    a = torch.as_tensor([advantage], dtype=logp.dtype, device=logp.device)
    loss, frac = create_loss("policy", epsilon=epsilon)(logp[None], old_logp[None], a)
    return loss, float(frac)


def policy_update(model, optimizer, examples: list[tuple[list[int], list[int], float]], *, epsilon: float,
                  num_iterations: int, micro_batch: int, max_grad_norm: float, pad_id: int,
                  loss_type: str = "token_mean") -> dict:
    """``num_iterations`` optimizer steps over the same examples (prompt ids, completion
    ids, advantage). Call :func:`disable_dropout` first, so that old and new log-probs
    are the same function of the weights (the model runs in train mode: gradient
    checkpointing stays on)."""
    import torch

    examples = [e for e in examples if e[1]]
    if not examples:
        return {"loss": 0.0, "clip_frac": 0.0, "grad_norm": 0.0, "train_tokens": 0}
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]) + len(examples[i][1]), reverse=True)
    batches = [order[s:s + micro_batch] for s in range(0, len(order), micro_batch)]
    n_tok = sum(len(e[1]) for e in examples)
    was_training = model.training
    model.train()
    old: dict[int, torch.Tensor] = {}
    if num_iterations > 1:  # with one pass, old = current weights: the detached new log-probs
        with torch.no_grad():
            for b in batches:
                for i, lp in zip(b, completion_logps(model, [examples[i][:2] for i in b], pad_id)):
                    old[i] = lp.detach()
    params = [p for p in model.parameters() if p.requires_grad]
    tot_loss = tot_clip = gn = 0.0
    try:
        for it in range(num_iterations):
            optimizer.zero_grad(set_to_none=True)
            loss_sum = clip_sum = 0.0
            for b in batches:
                lps = completion_logps(model, [examples[i][:2] for i in b], pad_id)
                parts = []
                for i, lp in zip(b, lps):
                    o = old.get(i, lp.detach())
                    mean_tok, frac = policy_loss(lp, o, examples[i][2], epsilon)
                    parts.append(mean_tok * len(lp) / n_tok if loss_type == "token_mean" else mean_tok / len(examples))
                    clip_sum += frac * len(lp)
                loss = torch.stack(parts).sum()
                loss.backward()
                loss_sum += float(loss.detach())
            gn = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf")))
            optimizer.step()
            tot_loss += loss_sum
            tot_clip += clip_sum / n_tok
    finally:
        model.train(was_training)
    return {"loss": tot_loss / num_iterations, "clip_frac": tot_clip / num_iterations, "grad_norm": gn, "train_tokens": n_tok}


def disable_dropout(model) -> int:
    """Set every dropout probability to 0 (as TRL's ``disable_dropout``); returns how many."""
    import torch

    n = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) and m.p:
            m.p = 0.0
            n += 1
    cfg = getattr(model, "config", None)
    for k in ("attention_dropout", "hidden_dropout", "dropout"):
        if cfg is not None and isinstance(getattr(cfg, k, None), float) and getattr(cfg, k):
            setattr(cfg, k, 0.0)
            n += 1
    return n
