"""Tree GRPO's checkpoints (its own loop, not a Trainer): ``checkpoints/checkpoint-N/`` with
the trainable weights, the optimizer and scheduler, every generator's RNG state, and
``state.json`` written last (its presence marks the checkpoint complete, as the Trainer's
trainer_state.json does for ``stages.common.complete_checkpoints``)."""
from __future__ import annotations

import json
import random
from pathlib import Path

from simtune.config import ConfigError
from simtune.io import atomic_path
from simtune.stages.common import complete_checkpoints

STATE_FILE = "state.json"


def _rng_state() -> dict:
    import numpy as np
    import torch

    # plain types and tensors only, so that it loads with torch.load(weights_only=True)
    pv, pstate, pgauss = random.getstate()
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    s = {"python": [pv, list(pstate), pgauss], "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                         int(has_gauss), float(gauss)],
         "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _set_rng_state(s: dict) -> None:
    import numpy as np
    import torch

    pv, pstate, pgauss = s["python"]
    random.setstate((pv, tuple(pstate), pgauss))
    name, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(exp, step: int, model, optimizer, scheduler, keep: int | None, command: str) -> Path:
    """checkpoints/checkpoint-N/: trainable weights, optimizer, scheduler, RNG; state.json last."""
    import torch

    dest = exp.checkpoints_dir / f"checkpoint-{step}"
    with atomic_path(dest, is_dir=True, command=command) as tmp:
        from safetensors.torch import save_file
        save_file({n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad},
                  str(tmp / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step}))
    if keep:
        for _, p in complete_checkpoints(exp, STATE_FILE)[:-keep]:
            import shutil
            shutil.rmtree(p, ignore_errors=True)
    return dest


def load_checkpoint(path: Path, model, optimizer, scheduler) -> int:
    import torch

    from safetensors.torch import load_file
    state = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise ConfigError(f"resume: checkpoint {path} holds parameters this model lacks (e.g. {missing[0]}); "
                          "was finetuning_type or the model changed?")
    with torch.no_grad():
        for n, v in state.items():
            params[n].copy_(v.to(params[n].device, params[n].dtype))
    o = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(o["optimizer"])
    scheduler.load_state_dict(o["scheduler"])
    _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return int(json.loads((path / STATE_FILE).read_text())["step"])


def latest_checkpoint(exp) -> Path | None:
    """The newest complete checkpoint, or None."""
    ck = complete_checkpoints(exp, STATE_FILE)
    return ck[-1][1] if ck else None
