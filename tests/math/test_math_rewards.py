"""Math rewards on hand-computed cases (issue: 2.0 exact, 1.5 right number other form, 0 wrong;
0.2 per tag; combined = sum)."""
import pytest
from hypothesis import given, strategies as st

from simtune.recipes.math.data import find_numbers, format_number, gold_answer, normalize_number, parse_number
from simtune.recipes.math.rewards import (correctness_score, extract_answer, format_score, last_number_correct,
                                          math_combined, math_correctness, math_format, well_formed)
from simtune.rewards import get_reward

R = "<reasoning>48/2 = 24, 48 + 24 = 72</reasoning>\n"


@pytest.mark.parametrize("answer_tag,gold,expected", [
    ("72", "72", 2.0),
    (" 72 \n", "72", 2.0),              # whitespace around is not a form difference
    ("72.0", "72", 2.0),                # the same number as a plain literal
    ("-3", "-3", 2.0),
    ("0.5", "0.5", 2.0),
    ("$1,234 dollars", "1234", 1.5),    # the lead's case
    ("1,234", "1234", 1.5),             # commas
    ("$72", "72", 1.5),                 # dollar sign
    ("72 clips", "72", 1.5),            # units
    ("The answer is 72.", "72", 1.5),   # trailing/leading text
    ("48 + 24 = 72", "72", 1.5),        # the last number in the tag counts
    ("1/2", "0.5", 1.5),                # a fraction of the right value
    ("73", "72", 0.0),
    ("72 or 73", "72", 0.0),
    ("seventy-two", "72", 0.0),
    ("", "72", 0.0),
    ("7.2", "72", 0.0),
])
def test_correctness_cases(answer_tag, gold, expected):
    assert correctness_score(f"{R}<answer>{answer_tag}</answer>", gold) == expected


def test_correctness_needs_a_closed_answer_tag():
    assert correctness_score(R + "<answer>72", "72") == 0.0
    assert correctness_score("The answer is 72", "72") == 0.0
    # the last closed tag counts
    assert correctness_score("<answer>5</answer> no wait <answer>72</answer>", "72") == 2.0


def test_gold_from_raw_gsm8k_solution():
    sol = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 1,200"
    assert gold_answer(sol) == "1200"
    assert correctness_score("<answer>1200</answer>", sol) == 2.0
    assert correctness_score("<answer>1,200</answer>", sol) == 1.5


@pytest.mark.parametrize("text,expected", [
    ("", 0.0),
    ("<reasoning>", 0.2),
    ("<reasoning>x</reasoning>", 0.4),
    ("<reasoning>x</reasoning><answer>", 0.6),
    ("<reasoning>x</reasoning><answer>1</answer>", 0.8),
    ("<answer>1</answer>", 0.4),
    ("<reasoning><reasoning><reasoning>", 0.2),  # repeating a tag earns nothing more
    ("<Reasoning>x</Reasoning>", 0.0),
])
def test_format_each_tag_point_two(text, expected):
    assert format_score(text) == pytest.approx(expected)


def test_combined_is_the_sum_and_registered():
    completions = [R + "<answer>72</answer>", "<answer>$72</answer>", "<reasoning>no answer", "nothing"]
    golds = ["72", "72", "72", "72"]
    corr = math_correctness(None, completions, answer=golds)
    fmt = math_format(None, completions)
    comb = math_combined(None, completions, answer=golds)
    assert corr == [2.0, 1.5, 0.0, 0.0]
    assert fmt == pytest.approx([0.8, 0.4, 0.2, 0.0])
    assert comb == pytest.approx([2.8, 1.9, 0.2, 0.0])
    assert get_reward("math_combined") is math_combined
    assert get_reward("math_correctness").__name__ == "math_correctness"  # TRL logs rewards/<__name__>/mean
    assert get_reward("math_format") is math_format


def test_conversational_completions_and_errors():
    comp = [[{"role": "assistant", "content": "<answer>4</answer>"}]]
    assert math_correctness(None, comp, answer=["4"]) == [2.0]
    with pytest.raises(ValueError, match="'answer' column"):
        math_correctness(None, ["x"])
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        math_correctness(None, ["a", "b"], answer=["1"])


def test_numbers_parse_without_eval():
    assert parse_number("1,234.50") == parse_number("1234.5")
    assert parse_number("__import__('os')") is None
    assert find_numbers("2**100") == [parse_number("2"), parse_number("100")]  # not computed
    assert normalize_number("$1,234 dollars") == "1234"
    assert normalize_number("it costs 3.50") == "3.5"
    assert normalize_number("no digits") is None
    assert format_number(parse_number("10/4")) == "2.5"
    assert format_number(parse_number("1/3")) == "1/3"
    assert find_numbers("10-5 and x2") == [parse_number("10"), parse_number("5")]


def test_lenient_and_well_formed():
    assert last_number_correct("so 48 + 24 = 72.", "72")
    assert not last_number_correct("72, plus 3", "72")
    assert well_formed("<reasoning>a</reasoning>\n<answer>1</answer>")
    assert not well_formed("<answer>1</answer><reasoning>a</reasoning>")
    assert extract_answer("<answer>\n 9 \n</answer>") == "9"


@given(st.integers(min_value=-10**9, max_value=10**9))
def test_any_integer_exact_and_with_commas(n):
    gold = str(n)
    assert correctness_score(f"<answer>{n}</answer>", gold) == 2.0
    assert correctness_score(f"<answer>{n:,} units</answer>", gold) == 1.5  # units always change the form
    assert correctness_score(f"<answer>{n + 1}</answer>", gold) == 0.0


@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_and_stays_in_range(text):
    c = correctness_score(text, "12")
    f = format_score(text)
    assert c in (0.0, 1.5, 2.0) and 0.0 <= f <= 0.8 + 1e-9
