"""Fixtures for the social data tests: small hand-made Weibo API corpora."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from simtune.recipes.social.schema import format_weibo_time

T0 = 1_700_000_000  # 2023-11-14


def user(uid, **kw):
    return {"id": uid, **kw}


def item(iid, uid, t, text="hi", **nested):
    d = {"id": iid, "user": user(uid), "text_raw": text, "created_at": format_weibo_time(t)}
    d.update(nested)
    return d


def post(pid, uid, t, text="root post", comments=(), reposts=(), **extra):
    d = {"id": pid, "user": user(uid), "text_raw": text, "created_at": format_weibo_time(t),
         "comments": list(comments), "reposts": list(reposts)}
    d.update(extra)
    return d


def write_lines(path: Path, records) -> Path:
    with open(path, "wb") as fh:
        for r in records:
            fh.write(r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode())
            fh.write(b"\n")
    return path


@pytest.fixture
def mk():
    """Builders: mk.post, mk.item, mk.user, mk.write_lines, mk.T0."""
    class _M:
        pass
    m = _M()
    m.post, m.item, m.user, m.write_lines, m.T0 = post, item, user, write_lines, T0
    return m


@pytest.fixture
def build(tmp_path):
    """``build(records_or_paths, **kw) -> (summary, out_dir)`` with progress off."""
    from simtune.recipes.social.data.build import build_trees

    def _build(inputs, profiles=None, out=None, window_days=7, strict=False, **kw):
        paths = []
        for k, inp in enumerate(inputs if isinstance(inputs, list) and inputs and isinstance(inputs[0], (list, Path)) else [inputs]):
            if isinstance(inp, Path):
                paths.append(str(inp))
            else:
                paths.append(str(write_lines(tmp_path / f"in{k}.jsonl", inp)))
        prof = None
        if profiles is not None:
            prof = tmp_path / "profiles.json"
            prof.write_text(json.dumps(profiles))
        out = out or tmp_path / "build"
        s = build_trees(inputs=paths, profiles=str(prof) if prof else None, id_map=kw.pop("id_map", None),
                        ced_dir=kw.pop("ced_dir", None), ced_limit=kw.pop("ced_limit", None), out_dir=str(out),
                        window_seconds=int(window_days * 86400), strict=strict, progress=False, **kw)
        return s, Path(out)
    return _build


def read_trees(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "trees.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture
def trees():
    return read_trees
