"""Example synthesis: JSON parsing and validation, caching, and a clear error when a model cannot write examples."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from daar.config import Domain, ExampleRow, SynthesisConfig
from daar.probe.examples import (
    DomainState,
    ExampleError,
    ExampleWriter,
    _echoes,
    domain_examples,
    load_examples_file,
    parse_instructions,
)

DOMAINS = [Domain(name="alpha", description="numbers and sums"), Domain(name="beta", description="words and names")]


def test_parse_instructions_keeps_valid_json_strings_only():
    text = '[{"instruction": "What is the sum of 17 and 25?"}, {"instruction": "Name a \\"red\\" fruit please"}'
    assert parse_instructions(text) == ["What is the sum of 17 and 25?", 'Name a "red" fruit please']
    assert parse_instructions('{"instruction": "too short"}') == []
    assert parse_instructions('{"instruction": "Reply in JSON with a new task"}') == []  # restates the request
    assert parse_instructions('{"instruction": "never closed because the model stopped') == []
    assert parse_instructions("no json at all") == []


def test_echo_of_the_prompt_is_recognised():
    prompt = "Topic: mathematics (arithmetic, algebra and word problems). Not about: coding."
    assert _echoes("Ask about arithmetic, algebra and word problems", prompt)
    assert not _echoes("How many apples are left if Tom eats three of ten?", prompt)


def test_given_examples_never_load_a_model(tmp_path):
    seeded = [d.model_copy(update={"examples": [ExampleRow(instruction="1+1?", output="2")]}) for d in DOMAINS]

    def no_writer():
        raise AssertionError("the generating model must not be loaded")

    result = domain_examples(seeded, tmp_path, no_writer, min_pairs=1)
    assert {k: len(v) for k, v in result.items()} == {"alpha": 1, "beta": 1}


def test_cached_domains_are_not_regenerated(tmp_path):
    for d in DOMAINS:
        rows = [{"instruction": f"{d.name} question {i}?", "input": "", "output": "ok"} for i in range(3)]
        (tmp_path / f"{d.name}.json").write_text(json.dumps({"domain": d.name, "accepted": rows}))
    result = domain_examples(DOMAINS, tmp_path, lambda: pytest.fail("regenerated"), min_pairs=3)
    assert [s.instruction for s in result["beta"]] == ["beta question 0?", "beta question 1?", "beta question 2?"]


def test_a_model_that_cannot_write_examples_fails_clearly_and_keeps_its_answers(tmp_path, tiny_model):
    cfg = SynthesisConfig(warmup_pairs=2, pairs_per_domain=1, candidates_per_round=2, max_rounds=1, max_new_tokens=8)

    def writer():
        return ExampleWriter(tiny_model, cfg, seed=0, device="cpu", dtype=torch.float32)

    with pytest.raises(ExampleError, match="--examples-file") as err:
        domain_examples(DOMAINS, tmp_path, writer, min_pairs=3)
    assert "'alpha'" in str(err.value) and "'beta'" in str(err.value)
    log = json.loads((tmp_path / "alpha.raw.json").read_text())
    assert len(log) >= 3 and all(entry["verdict"] and entry["domain"] == "alpha" for entry in log)
    assert not (tmp_path / "alpha.json").exists()


def test_examples_file_attaches_rows_and_names_bad_domains(tmp_path):
    good = tmp_path / "seeds.yaml"
    good.write_text(yaml.safe_dump({"alpha": [{"instruction": "2+2?", "output": "4"}]}))
    domains = load_examples_file(good, DOMAINS)
    assert [len(d.examples) for d in domains] == [1, 0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"gamma": [{"instruction": "x", "output": "y"}]}))
    with pytest.raises(ValueError, match="unknown domains"):
        load_examples_file(bad, DOMAINS)
    empty_output = tmp_path / "empty.yaml"
    empty_output.write_text(yaml.safe_dump({"alpha": [{"instruction": "x", "output": ""}]}))
    with pytest.raises(ValueError, match="alpha"):
        load_examples_file(empty_output, DOMAINS)


def _write(model_dir, cfg: SynthesisConfig, seed: int, dtype: torch.dtype = torch.float32) -> list[DomainState]:
    writer = ExampleWriter(model_dir, cfg, seed=seed, device="cpu", dtype=dtype)
    states = [DomainState(d, [o for o in REAL_DOMAINS if o is not d], seed) for d in REAL_DOMAINS]
    writer.write(states)
    return states


REAL_DOMAINS = [
    Domain(name="mathematics", description="arithmetic, algebra and word problems solved with numbers and equations"),
    Domain(name="coding", description="writing, explaining and fixing computer programs and algorithms"),
]


def test_the_default_model_writes_valid_distinct_seeds_in_batches():
    """The real 135M instruct model, all domains and candidates in one batched call per step."""
    from daar.models import resolve_model

    cfg = SynthesisConfig(warmup_pairs=2, pairs_per_domain=2, candidates_per_round=2, max_rounds=1, max_new_tokens=24)
    model = resolve_model("smollm2-135m-instruct")
    states = _write(model, cfg, seed=7)
    assert sum(len(st.accepted) for st in states) >= 2  # most answers of this model are usable
    for st in states:
        for pair in st.accepted:
            assert parse_instructions(json.dumps({"instruction": pair.instruction})) == [pair.instruction]
            assert len(pair.output) >= 2
        for i, a in enumerate(st.vectors):  # every accepted pair is unlike every other
            assert all(float(a @ b) < cfg.similarity_threshold for b in st.vectors[i + 1 :])
        assert {e["verdict"] for e in st.log} and all(e["stage"] for e in st.log)


def test_batched_candidates_differ_by_seed_and_repeat_with_it(tiny_model):
    cfg = SynthesisConfig(
        warmup_pairs=1, pairs_per_domain=1, candidates_per_round=3, max_rounds=1, max_new_tokens=8, min_pairs=1
    )
    first, same, other = (_write(tiny_model, cfg, seed) for seed in (1, 1, 2))
    raws = [[e["raw"] for st in states for e in st.log] for states in (first, same, other)]
    for st in first:  # three warm-up candidates + a round of three, then an extra round if short
        regular = [e for e in st.log if e["stage"] in ("warmup", "round 1")]
        short = not any(e["verdict"] == "accepted" for e in regular)  # min_pairs 1
        assert len([e for e in regular if e["stage"] == "warmup"]) == 3
        assert len(regular) == 3 + 3
        assert len([e for e in st.log if e["stage"] == "round 2"]) == (3 if short else 0)
    assert any(len(st.log) == 3 + 3 + 3 for st in first)  # the random model leaves one domain short
    assert raws[0] == raws[1]
    assert raws[0] != raws[2]


def test_extra_rounds_go_only_to_domains_short_of_min_pairs(tiny_model):
    cfg = SynthesisConfig(warmup_pairs=1, pairs_per_domain=5, candidates_per_round=2, max_rounds=2, max_new_tokens=8)
    writer = ExampleWriter(tiny_model, cfg, seed=3, device="cpu", dtype=torch.float32)
    states = [DomainState(d, [o for o in REAL_DOMAINS if o is not d], 3) for d in REAL_DOMAINS]
    given = [0, 3]  # the second domain starts with min_pairs (3) reached, its target (6) not
    for i in range(given[1]):
        states[1].accepted.append(ExampleRow(instruction=f"Given question number {i}?", output="an answer"))
        states[1].vectors.append(torch.nn.functional.one_hot(torch.tensor(i), 64).float())  # hidden size
    writer.write(states)
    extra = 0
    for st, start in zip(states, given, strict=True):
        assert {"round 1", "round 2"} <= {e["stage"] for e in st.log}  # the regular rounds, for both
        for r in (3, 4):  # the extra rounds: only while the domain was short of min_pairs
            earlier = {"warmup"} | {f"round {k}" for k in range(1, r)}
            before = start + sum(e["verdict"] == "accepted" for e in st.log if e["stage"] in earlier)
            ran = any(e["stage"] == f"round {r}" for e in st.log)
            assert ran == (before < cfg.min_pairs), (st.domain.name, r, before)
            extra += ran
    assert extra > 0  # the case under test happened


def test_by_default_only_a_domain_short_of_min_pairs_gets_a_round_after_the_warm_up(tiny_model):
    cfg = SynthesisConfig(warmup_pairs=1, pairs_per_domain=5, candidates_per_round=3, max_new_tokens=8, min_pairs=2)
    assert cfg.max_rounds == 0  # the default: no round showing accepted pairs to every domain
    writer = ExampleWriter(tiny_model, cfg, seed=5, device="cpu", dtype=torch.float32)
    states = [DomainState(d, [o for o in REAL_DOMAINS if o is not d], 5) for d in REAL_DOMAINS]
    for i in range(2):  # the second domain starts with min_pairs reached, its target (6) not
        states[1].accepted.append(ExampleRow(instruction=f"Given question number {i}?", output="an answer"))
        states[1].vectors.append(torch.nn.functional.one_hot(torch.tensor(i), 64).float())  # hidden size
    writer.write(states)
    short, done = states
    assert len([e for e in done.log if e["stage"] == "warmup"]) == 3  # one instruction per candidate
    assert {e["stage"] for e in done.log} == {"warmup"}
    assert sum(e["verdict"] == "accepted" for e in short.log if e["stage"] == "warmup") < 2  # the random model
    assert len([e for e in short.log if e["stage"] == "round 1"]) == 3
    assert {e["stage"] for e in short.log} == {"warmup", "round 1"}
