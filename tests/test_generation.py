import pytest

from simtune.generation import generate
from simtune.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def mt(tmp_path_factory):
    from testutils import build_tiny_model
    # a large init so that different prompts give visibly different greedy outputs
    path = build_tiny_model(tmp_path_factory.mktemp("m"), init_range=1.0, seed=3)
    return load_model(str(path), device="cpu"), load_tokenizer(str(path))


def test_batched_matches_one_at_a_time(mt):
    """Left-padded, length-sorted batches give the same greedy outputs, in caller order."""
    model, tok = mt
    prompts = ["hi", "a much longer prompt about reposting a post on weibo", "中文 提示", [{"role": "user", "content": "x"}]]
    batched = generate(model, tok, prompts, max_new_tokens=6, batch_size=4)
    single = [generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1  # not one output copied everywhere


def test_num_return_sequences_and_bad_option(mt):
    model, tok = mt
    out = generate(model, tok, ["a", "b"], max_new_tokens=3, do_sample=True, num_return_sequences=3)
    assert len(out) == 2 and all(len(o) == 3 for o in out)
    with pytest.raises(TypeError, match="unknown option 'max_tokens'"):
        generate(model, tok, ["a"], max_tokens=3)
