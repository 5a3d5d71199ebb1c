"""Constrained decoding of social answers: the grammar walker and the logits processor."""
import torch

from simtune.generation import generate
from simtune.recipes.social.model.constrained import AFTER_ACTION, AFTER_USER, CLOSE, OPEN, AnswerConstraint, \
    answer_constraint_factory, legal_next
from simtune.recipes.social.prompt import build_prompt, parse_answer

CANDS = ["101", "1012", "7"]


def item(u, a="comment", t="hi"):
    return OPEN + u + AFTER_USER + a + AFTER_ACTION + t


def test_grammar_start_and_choice_of_users():
    opts, text = legal_next("", CANDS, ordered=False, closing=False, max_text_chars=50)
    assert text is False
    assert "[]" in opts and "[" + OPEN + "1012" + AFTER_USER in opts and len(opts) == 4
    # after '[{"user":"101' both 101 and 1012 are still possible; 7 is not
    opts, _ = legal_next("[" + OPEN + "101", CANDS, False, False, 50)
    assert sorted(opts) == sorted([AFTER_USER, "2" + AFTER_USER])
    # a user outside the pool leaves the grammar
    assert legal_next("[" + OPEN + "9", CANDS, False, False, 50) is None


def test_grammar_text_close_no_repeat_and_pool_order():
    g = "[" + item("1012", t="nice one")
    opts, text = legal_next(g, CANDS, ordered=False, closing=False, max_text_chars=50)
    assert text is True  # inside the text
    assert CLOSE + "]" in opts and CLOSE + "," + OPEN + "101" + AFTER_USER in opts
    assert not any(o.startswith(CLOSE + "," + OPEN + "1012\"") for o in opts)  # never the same user twice
    opts, _ = legal_next(g, CANDS, ordered=True, closing=False, max_text_chars=50)
    assert sorted(opts) == sorted([CLOSE + "]", CLOSE + "," + OPEN + "7" + AFTER_USER])  # only later candidates
    # a long text must be closed; few tokens left: no new item
    assert legal_next(g, CANDS, False, False, max_text_chars=5)[1] is False
    assert legal_next(g, CANDS, False, closing=True, max_text_chars=50) == ([CLOSE + "]"], False)
    done = g + CLOSE + "]"
    assert legal_next(done, CANDS, False, False, 50) == ([], None)
    assert parse_answer(done) == [{"user": "1012", "action": "comment", "text": "nice one"}]
    # bad action
    assert legal_next("[" + OPEN + "7" + AFTER_USER + "like", CANDS, False, False, 50) is None


def test_processor_makes_a_random_model_answer_in_grammar(tiny_model_dir):
    """An untrained model writes noise; under the constraint every answer parses, names
    pool candidates only, each once, in pool order, and ends within the token budget."""
    from simtune.models import load_model, load_tokenizer

    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    pools = [["1000001", "1000002", "1000003"], ["55", "5", "555", "12"], ["a1", "b2"], ["1000009"]]
    prompts = [build_prompt(f"post {k}", "author", [(u, "interests: food") for u in p]) for k, p in enumerate(pools)]
    free = generate(model, tok, prompts, max_new_tokens=60, batch_size=4)
    assert sum(parse_answer(o) is not None for o in free) == 0  # the unconstrained noise never parses
    n_tok = 60
    factory = answer_constraint_factory(tok, pools, prompts, max_new_tokens=n_tok)
    for sample in (False, True):
        outs = generate(model, tok, prompts, max_new_tokens=n_tok, batch_size=3, constraint=factory,
                        do_sample=sample, temperature=1.5, num_return_sequences=2 if sample else 1)
        flat = [o for x in outs for o in (x if isinstance(x, list) else [x])]
        pool_of = [p for p in pools for _ in range(2 if sample else 1)]
        for o, pool in zip(flat, pool_of):
            ans = parse_answer(o)
            assert ans is not None, o
            users = [a["user"] for a in ans]
            assert set(users) <= set(pool) and len(users) == len(set(users))
            assert [pool.index(u) for u in users] == sorted(pool.index(u) for u in users)
            assert len(tok(o, add_special_tokens=False)["input_ids"]) <= n_tok


def test_processor_masks_everything_but_the_legal_tokens(tiny_model_dir):
    from simtune.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    prefix = tok("[" + OPEN + "10", add_special_tokens=False)["input_ids"]
    proc = AnswerConstraint(tok, [CANDS], width=0, max_new_tokens=100)
    scores = proc(torch.tensor([prefix]), torch.zeros(1, len(tok)))
    allowed = torch.isfinite(scores[0]).nonzero().flatten().tolist()
    texts = {tok.decode([i]) for i in allowed}
    assert texts and all(("1" + AFTER_USER).startswith(t) or ("12" + AFTER_USER).startswith(t) or
                         AFTER_USER.startswith(t) for t in texts)
    assert "1" in texts and "7" not in texts


def test_tree_rollout_generator_samples_in_grammar(tiny_model_dir):
    """hf_generator(constrained=True), as tree GRPO uses it: every sampled answer parses and
    its completion ids are what the model generated (the text decodes from them)."""
    from simtune.models import load_model, load_tokenizer
    from simtune.recipes.social.model.rollout import hf_generator

    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    torch.manual_seed(1)
    pool = [("2001", "interests: food"), ("2002", "no profile"), ("2003", "interests: music")]
    prompts = [build_prompt("hello", "9", pool), build_prompt("hi", "9", pool[:2], order="time")]
    gen = hf_generator(model, tok, max_new_tokens=48, batch_size=2, do_sample=True, temperature=1.5,
                       constrained=True)
    groups = gen(prompts, 3)
    for g, p in zip(groups, prompts):
        assert len(g) == 3
        for c in g:
            ans = parse_answer(c.text)
            assert ans is not None and {a["user"] for a in ans} <= {u for u, _ in pool}
            assert tok.decode(c.completion_ids, skip_special_tokens=True) == c.text
