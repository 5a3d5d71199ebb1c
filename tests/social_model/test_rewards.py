import pytest

from simtune.recipes.social.rewards import social_action, social_combined, social_format, social_text, social_who
from simtune.recipes.social.scoring import score_answer
from simtune.rewards import get_reward

TRUTH = dict(true_users=[["u1", "u2"]], true_actions=[["comment", "repost"]], true_texts=[["好看的电影", ""]])


def call(fn, text, truth=TRUTH):
    return fn(prompts=["p"], completions=[text], **truth)[0]


def test_perfect_answer():
    ans = '[{"user": "u2", "action": "repost", "text": ""}, {"user": "u1", "action": "comment", "text": "好看的电影"}]'
    assert [call(f, ans) for f in (social_format, social_who, social_action, social_text)] == [1.0, 1.0, 1.0, 1.0]
    assert call(social_combined, ans) == pytest.approx(0.2 + 1.0 + 0.3 + 0.5)


def test_partial_answer_hand_computed():
    # one right user (wrong action, half the characters), one wrong user, one duplicate
    ans = ('```json\n[{"user": "u1", "action": "repost", "text": "好看"}, {"user": "u9", "action": "comment", "text": "x"},'
           ' {"user": "u1", "action": "comment", "text": "ignored duplicate"}]\n```')
    # P = 1/2, R = 1/2 -> F1 = 0.5; action 0/1; ROUGE-L chars: lcs("好看","好看的电影")=2 -> P=1, R=0.4, F1=0.5714
    assert call(social_who, ans) == pytest.approx(0.5)
    assert call(social_action, ans) == 0.0
    assert call(social_text, ans) == pytest.approx(2 * 1 * 0.4 / 1.4)


def test_invalid_and_empty():
    assert call(social_format, "I think u1 will comment") == 0.0
    assert call(social_who, "not json") == 0.0
    nobody = dict(true_users=[[]], true_actions=[[]], true_texts=[[]])
    assert call(social_who, "[]", nobody) == 1.0 and call(social_who, '[{"user":"a","action":"comment","text":""}]', nobody) == 0.0
    s = score_answer([], ["u1"], ["comment"], ["x"])
    assert s["f1"] == 0.0 and s["action_acc"] is None


def test_registered_and_missing_columns():
    assert get_reward("social_who") is social_who
    with pytest.raises(KeyError, match="true_users"):
        social_who(prompts=["p"], completions=["[]"])
