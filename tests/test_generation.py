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


def _embedded_shapes(model, fn):
    """Shapes of the token batches that reach the embedding layer while ``fn`` runs."""
    shapes = []
    h = model.get_input_embeddings().register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
    try:
        out = fn()
    finally:
        h.remove()
    return out, shapes


def test_group_samples_share_one_prefill(mt):
    """n samples of a prompt: the prompt goes through the model once (P-1 tokens, then one
    token per sample), not n times as with plain num_return_sequences; same greedy output."""
    import torch

    from simtune.generation import generate_ids, left_pad
    model, tok = mt
    seqs = [tok("a longer prompt about a post and its reposts", add_special_tokens=False)["input_ids"],
            tok("short one", add_special_tokens=False)["input_ids"]]
    ids, mask = left_pad(seqs, tok.pad_token_id)
    P, n, new = ids.shape[1], 3, 5
    # top_k=1: sampling that always picks the argmax (greedy refuses num_return_sequences > 1)
    kw = dict(max_new_tokens=new, min_new_tokens=new, pad_token_id=tok.pad_token_id, do_sample=True, top_k=1)
    with torch.no_grad():
        plain, plain_shapes = _embedded_shapes(model, lambda: model.generate(
            input_ids=ids, attention_mask=mask, num_return_sequences=n, **kw))
        shared, shapes = _embedded_shapes(model, lambda: generate_ids(model, ids, mask, n, **kw))
    assert plain_shapes[0] == (2 * n, P)                     # plain: the prompt computed n times
    assert shapes[0] == (2, P - 1)                           # shared: once per prompt ...
    assert shapes[1:] == [(2 * n, 1)] * new                  # ... then one token per sample and step
    assert sum(b * t for b, t in shapes) < sum(b * t for b, t in plain_shapes)
    assert torch.equal(shared, plain)                        # left padding and positions handled alike


def test_sampled_group_from_shared_prefill_differs_per_sample(mt):
    model, tok = mt
    import torch
    torch.manual_seed(0)
    out = generate(model, tok, ["a prompt", "another, longer prompt here"], max_new_tokens=6, do_sample=True,
                   num_return_sequences=4, batch_size=2)
    assert [len(o) for o in out] == [4, 4] and all(len(set(o)) > 1 for o in out)


def test_no_repeat_ngram_counts_the_output_only():
    """An n-gram of the prompt may be quoted once; one the output already holds may not."""
    import torch
    from simtune.generation import OutputNoRepeatNGram
    # prompt (width 4) = 5 6 5 6; output so far = 7 8 9 7 -> the bigram (7, 8) is banned next
    ids = torch.tensor([[5, 6, 5, 6, 7, 8, 9, 7], [5, 6, 5, 6, 8, 9, 7, 5]])
    scores = OutputNoRepeatNGram(2, 4)(ids, torch.zeros(2, 10))
    assert scores[0].isinf().nonzero().flatten().tolist() == [8]
    assert not scores[1].isinf().any()  # the prompt's (5, 6) may follow the output's 5
    scores = OutputNoRepeatNGram(2, 0)(ids, torch.zeros(2, 10))  # counting the prompt too (transformers' rule)
    assert scores[1].isinf().nonzero().flatten().tolist() == [6]


def test_no_repeat_ngram_in_generation(tmp_path):
    """Greedy with no_repeat_ngram_size 2 never repeats a bigram of its own output (a
    small-init model that loops when left alone)."""
    from testutils import build_tiny_model
    path = build_tiny_model(tmp_path, init_range=0.02, seed=0)
    model, tok = load_model(str(path), device="cpu"), load_tokenizer(str(path))
    def bigrams(text):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return list(zip(ids, ids[1:]))
    plain = bigrams(generate(model, tok, ["hello"], max_new_tokens=24)[0])
    out = bigrams(generate(model, tok, ["hello"], max_new_tokens=24, no_repeat_ngram_size=2)[0])
    assert len(plain) > len(set(plain))  # it loops
    assert len(out) == len(set(out)) and len(out) > 10
