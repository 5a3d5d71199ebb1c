"""Shared test fixtures.

- ``shared_data``: the real third-party data in ../shared/data. Tests that need it skip
  when it is absent on a developer machine, but under CI (CI=true) its absence fails.
- Tests run on CPU, offline, with one torch thread so parallel runs do not thrash, and with a
  fixed pseudonymisation salt in the environment (never a file in the home folder).
- Property tests (hypothesis) draw new examples on every run on a developer machine; under
  CI (CI=true, or SIMTUNE_HYPOTHESIS_PROFILE=ci, which .ci/run sets) they are derandomized, so that a CI run is reproducible and a failure found
  by chance surfaces where it can be looked at, not as a landing that fails once in N.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from testutils import build_tiny_model  # noqa: F401  (re-exported for tests)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
# pseudonymised runs (on by default for real data) read this salt instead of creating one in ~/.config
os.environ.setdefault("SIMTUNE_PSEUDONYM_SALT", "simtune tests: a fixed salt, not a secret")

try:
    from hypothesis import settings as _hyp_settings
    _hyp_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("SIMTUNE_HYPOTHESIS_PROFILE") == "ci":
        _hyp_settings.load_profile("ci")
except ImportError:  # hypothesis is a test extra; the tests that use it import it themselves
    pass

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SIMTUNE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing")
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Path of a tiny random causal LM folder (session-wide; copy it before changing it)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    try:
        import torch
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:
        pass
    yield


@pytest.fixture
def pr_file(tmp_path):
    """A small fixed prompt/response set the tiny model can fit in a few steps."""
    import json
    rows = [{"prompt": f"user {i} sees post about {t}", "response": f'[{{"user": "u{i}", "action": "comment", "text": "{t}!"}}]'}
            for i, t in enumerate(["猫", "football", "股票", "music"] * 4)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
