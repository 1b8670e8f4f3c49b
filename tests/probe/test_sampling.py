"""The seed writer's sampler: shared prompts read once, finished rows leaving the batch, and each row
still computing exactly what it would alone."""

from __future__ import annotations

import math

import pytest
import torch

from daar.models import load_causal_lm, load_tokenizer
from daar.probe.sampling import Sampler, Sampling, pick_tokens, shared_prefix

GREEDY = 1e-6  # a top_p this small keeps only the most likely token


@pytest.fixture(scope="module")
def sampler(tiny_model) -> Sampler:
    tokenizer = load_tokenizer(tiny_model)
    return Sampler(load_causal_lm(tiny_model, torch.float32, "cpu"), tokenizer, "cpu")


def _alone(sampler: Sampler, text: str, new: int, stop: list[str] | None) -> str:
    """What transformers' own generate writes for one row, greedy, without any padding."""
    inputs = sampler.tokenizer(text, return_tensors="pt")
    out = sampler.model.generate(
        **inputs, do_sample=False, max_new_tokens=new, stop_strings=stop, tokenizer=sampler.tokenizer
    )
    return sampler.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).rstrip()


def test_shared_prompts_gaps_and_early_stops_give_what_each_row_gives_alone(sampler):
    long_prompt = "Topic: mathematics (numbers and sums). Write one question about this.\n"
    requests = [
        (long_prompt, '{"instruction": "What'),
        ("A different, shorter prompt:", " Why"),
        (long_prompt, '{"instruction": "Calculate the'),  # a longer pre-fill: a gap in its row
        (long_prompt, '{"instruction": "If'),
    ]
    free = [_alone(sampler, p + f, 12, None) for p, f in requests]
    # a stop string that ends row 2 after a few tokens while the others go on
    stop = free[2][len(free[2]) // 3 :][:3]
    assert stop.strip() and not any(stop in text for i, text in enumerate(free) if i != 2)
    cfg = Sampling(top_p=GREEDY, temperature=1.0, max_new_tokens=12, stop=(stop,))
    got = sampler.sample(requests, cfg, torch.Generator().manual_seed(0))
    expected = [_alone(sampler, p + f, 12, [stop]) for p, f in requests]
    assert got == expected
    assert len(got[2]) < len(free[2]) and got[0] == free[0]  # row 2 stopped early, row 0 did not


def test_every_row_reads_its_prompt_as_it_would_alone(sampler):
    """Next-token logits after the shared prompt, the gap and the row's own tokens equal an
    unpadded pass over that row (greedy texts alone are too coarse to see a wrong position)."""
    requests = [
        ("Topic: coding. Write one question.", ' {"instruction": "How do I sort a list of'),
        ("Short.", " Why"),
        ("Topic: coding. Write one question.", ' {"instruction": "Write'),
        ("Topic: coding. Write one question.", ""),
    ]
    state = sampler.read_prompts(requests)
    assert state.mask.shape[0] == 4 and int((state.mask == 0).sum()) > 0  # padding and gaps exist
    for slot, i in enumerate(state.order):
        ids = sampler.tokenizer(requests[i][0] + requests[i][1], return_tensors="pt")["input_ids"]
        alone = sampler.model(input_ids=ids).logits[0, -1]
        assert torch.allclose(state.logits[slot], alone, atol=1e-4), requests[i]


def test_sampling_repeats_with_the_generator_seed(sampler):
    requests = [("Write a question about numbers.", " What")] * 3 + [("Name a colour.", "")]
    cfg = Sampling(top_p=0.95, temperature=0.9, max_new_tokens=6)
    first, again, other = (sampler.sample(requests, cfg, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert first == again and first != other
    assert len(set(first[:3])) > 1  # copies of one prompt still sample independently
    assert sampler.sample([], cfg, torch.Generator()) == []


def test_top_p_keeps_the_smallest_set_that_reaches_it():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(20_000, 1)
    for top_p, allowed in ((0.7, 2), (0.95, 3), (0.99, 4), (GREEDY, 1)):
        picks = pick_tokens(logits, Sampling(top_p, 1.0, 1), torch.Generator().manual_seed(0))
        counts = torch.bincount(picks, minlength=4).float() / len(picks)
        assert int((counts > 0).sum()) == allowed
        share = probs[:allowed] / probs[:allowed].sum()  # renormalised over the kept tokens
        assert torch.allclose(counts[:allowed], share, atol=0.015)
    # top_k first, then top_p on the k tokens' renormalised probabilities (generate's order)
    for top_k, top_p, allowed in ((2, 1.0, 2), (3, 0.7, 2), (3, 0.9, 3), (1, 1.0, 1)):
        picks = pick_tokens(logits, Sampling(top_p, 1.0, 1, top_k=top_k), torch.Generator().manual_seed(0))
        counts = torch.bincount(picks, minlength=4).float() / len(picks)
        assert int((counts > 0).sum()) == allowed, (top_k, top_p)
        assert torch.allclose(counts[:allowed], probs[:allowed] / probs[:allowed].sum(), atol=0.015)
    hotter = pick_tokens(logits, Sampling(1.0, 2.0, 1), torch.Generator().manual_seed(0))
    assert math.isclose(float((hotter == 3).float().mean()), 0.05**0.5 / float((probs**0.5).sum()), abs_tol=0.01)


def test_top_k_draws_what_sorting_the_whole_vocabulary_draws():
    """pick_tokens takes the k largest with topk; the draws are those of sorting every token and
    keeping the first k (the earlier code), so a seed samples the same tokens."""
    logits = torch.randn(64, 49_152, generator=torch.Generator().manual_seed(0)) * 3
    cfg = Sampling(top_p=0.95, temperature=0.9, max_new_tokens=1, top_k=50)
    probs = torch.softmax(logits / cfg.temperature, dim=-1)
    kept, order = probs.sort(dim=-1, descending=True)
    kept = kept[:, : cfg.top_k] / kept[:, : cfg.top_k].sum(-1, keepdim=True)
    kept = kept.masked_fill(kept.cumsum(-1) - kept >= cfg.top_p, 0.0)
    for seed in range(3):
        expected = order.gather(-1, torch.multinomial(kept, 1, generator=torch.Generator().manual_seed(seed)))
        assert torch.equal(pick_tokens(logits, cfg, torch.Generator().manual_seed(seed)), expected.squeeze(-1))


def test_each_row_keeps_a_token_of_its_own():
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 3, 4, 5]]) == 3
    assert shared_prefix([[1, 2, 3]]) == 2  # a row alone: all but its last token
    assert shared_prefix([[1, 2], [1, 2]]) == 1
    assert shared_prefix([[7], [7, 8]]) == 0
