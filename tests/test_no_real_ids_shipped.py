"""No file the project ships (code, configs, docs, examples, tests) holds a user id or user
name from the real data in ../shared/data: examples and reports use invented ones."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ["README.md", "Makefile", "pyproject.toml", "configs", "docs", "src", "benchmarks", "tests"]
TOKEN = re.compile(r"[0-9A-Za-z_.\-]+")
CJK = re.compile(r"[\u4e00-\u9fff]")


def shipped_text_files():
    for name in SHIPPED:
        p = REPO / name
        for f in ([p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else []):
            if f.is_file() and "__pycache__" not in f.parts:
                try:
                    yield f, f.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue  # binary: nothing of the shared data is stored that way


@pytest.mark.shared_data
def test_no_real_user_id_or_name_in_shipped_files(shared_data):
    ids: set[str] = set()
    names: set[str] = set()
    ced = shared_data / "weibo-ced"
    for f in (ced / "original-microblog").glob("*.json"):
        ids.update(f.stem.split("_")[1:])  # the post id and its author's id
    for sub in ("rumor-repost", "non-rumor-repost"):
        for f in (ced / sub).glob("*.json"):
            ids.update(str(o.get(k)) for o in json.loads(f.read_text(encoding="utf-8")) for k in ("uid", "mid"))
    for f in (shared_data / "douban-2022films" / "details").glob("*.csv"):
        with open(f, newline="", encoding="utf-8-sig") as fh:
            for r in csv.DictReader(fh):
                ids.add(r["id"].strip())
                if len(CJK.findall(r["username"] or "")) >= 4:
                    names.add(r["username"].strip())
    ids = {i for i in ids if len(i) >= 5 and any(ch.isdigit() for ch in i)}  # not plain words, which collide
    assert len(ids) > 10_000 and len(names) > 100
    hits = []
    for f, text in shipped_text_files():
        found = sorted(set(TOKEN.findall(text)) & ids) + sorted(n for n in names if n in text)
        if found:
            hits.append((str(f.relative_to(REPO)), found[:5]))
    assert hits == []
