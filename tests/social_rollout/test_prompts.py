import pyarrow.parquet as pq
import pytest

from simtune.io import DataError
from simtune.recipes.social.prompt import build_prompt, parse_prompt


def test_round_trip_on_every_corpus_prompt(corpus):
    rows = pq.read_table(corpus / "train.parquet", columns=["prompt", "depth", "candidates"]).to_pylist()
    assert {r["depth"] for r in rows} == {0, 1, 2}
    for r in rows:
        p = parse_prompt(r["prompt"])
        assert build_prompt(**p) == r["prompt"]
        assert [u for u, _ in p["candidates"]] == r["candidates"]
        assert len(p["chain"]) == r["depth"]


@pytest.mark.parametrize("text,chain", [
    ("猫咪 好可爱！ 今天\n天气不错", []),
    ("", [{"user": "u1", "action": "comment", "text": "同意: yes"}, {"user": "u2", "action": "repost", "text": ""}]),
    ("x" * 500, [{"user": "9", "action": "comment", "text": "y" * 300}]),
])
def test_round_trip_hand_made(text, chain):
    cands = [("1001", "interests: food; 3 earlier acts"), ("u:2", "no profile; 0 earlier acts; said: a: b"), ("7", "")]
    prompt = build_prompt(text, "author 1", cands, chain)
    p = parse_prompt(prompt)
    assert build_prompt(**p) == prompt
    assert p["post_author"] == "author 1" and len(p["chain"]) == len(chain)
    assert p["candidates"][0] == ("1001", "interests: food; 3 earlier acts")
    if chain:
        assert [c["user"] for c in p["chain"]] == [c["user"] for c in chain]
        assert [c["action"] for c in p["chain"]] == [c["action"] for c in chain]


def test_not_a_prompt_names_the_field():
    with pytest.raises(DataError, match="field 'prompt'"):
        parse_prompt("hello\nworld", "train.parquet")
    good = build_prompt("t", "a", [("u1", "p")])
    with pytest.raises(DataError, match="candidate line"):
        parse_prompt(good.replace("u1: p", "u1 p"))
