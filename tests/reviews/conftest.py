from __future__ import annotations

import json
from pathlib import Path

import pytest

HEADER = "seen,username,id,time,location,votes,star,comment\n"


@pytest.fixture
def douban_dir(tmp_path) -> Path:
    """A tiny invented Douban-form folder with one bad row of each kind."""
    d = tmp_path / "douban"
    (d / "details").mkdir(parents=True)
    (d / "info.csv").write_text("id,name,type\n101,甲片,x\n102,乙片,x\n103,丙片,x\n", encoding="utf-8")
    (d / "details" / "101.csv").write_text(HEADER + "".join([
        "1,名A,ua,2022-01-01 10:00:00,北京,3,40,很好看，推荐\n",       # line 2
        "1,名B,ub,2022-01-02 10:00:00,,1,,一般般吧\n",                # line 3: no star = no rating
        "1,名C,uc,2022/13/45,,1,30,日期坏了\n",                       # line 4: bad time
        "1,名D,ud,2022-01-03 10:00:00,,1,35,星不对\n",                # line 5: bad star
        "1,名E,ue,2022-01-03 10:00:00,,1,30,\"多了一个\"引号\",x\n",   # line 6: stray quote -> 9 fields
        "1,名A,ua,2022-01-05 10:00:00,北京,3,40,又看了一遍\n",        # line 7: duplicate user/film
        "0,名F,uf,2022-01-06 10:00:00,,0,,\n",                      # line 8: empty review
    ]), encoding="utf-8")
    (d / "details" / "102.csv").write_text(HEADER + "".join([
        "1,名A,ua,2022-02-01 10:00:00,北京,3,20,无聊，睡着了\n",
        "1,名B,ub,2022-01-20 10:00:00,上海,1,50,太精彩了\n",
    ]), encoding="utf-8")
    (d / "details" / "103.csv").write_text(HEADER + "".join([
        "1,名A,ua,2022-03-01 10:00:00,,3,30,还行\n",
        "1,名B,ub,2022-03-01 10:00:00,,1,10,烂片\n",
    ]), encoding="utf-8")
    return d


@pytest.fixture
def json_form():
    """Write a JSON-form file: ``json_form(path, {name: [(timestamp, film, review, rating)]})``."""
    return make_json_form


def make_json_form(path: Path, users: dict[str, list[tuple[str, str, str, int | None]]],
                   description: str = "写影评") -> Path:
    """users: name -> [(timestamp, film, review, rating)]"""
    data = [{"user": {"profile": {"name": name, "城市": "某地"}},
             "task": {"description": description, "task_behavior_collections": [
                 {"type": "movie_rating", "data": []},
                 {"type": "movie_review", "data": [
                     {"continuation": text, "continuation_prefix": f"电影名: {film}", "timestamp": ts,
                      "context": [], **({"rating": r} if r is not None else {})}
                     for ts, film, text, r in revs]}]}} for name, revs in users.items()]
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path
