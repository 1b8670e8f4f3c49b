"""Chat-native tuning: a chat row trains on its own turns through the learner's template, with the
loss on every assistant turn and nothing else; an instruction row encodes exactly as before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from daar.config import FieldMap
from daar.models import load_tokenizer
from daar.read import read_pool
from daar.read.records import to_record
from daar.tune import TuneConfig, TuneError, build_examples, tune
from daar.tune.data import IGNORE_INDEX, encode_example
from daar.tune.tokens import TokenCounter

# system + user + assistant + user + assistant, as ShareGPT writes it (from/value, human/gpt)
SHAREGPT = {
    "id": "chat-3",
    "conversations": [
        {"from": "system", "value": "You are terse."},
        {"from": "human", "value": "What is the capital of France?"},
        {"from": "gpt", "value": "Paris."},
        {"from": "human", "value": "And of Italy?"},
        {"from": "gpt", "value": "Rome, since 1871."},
    ],
}
ANSWERS = ["Paris.", "Rome, since 1871."]

# Meta's Llama-3 Instruct template; the test gives the SmolLM2 tokenizer its special tokens
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# sha256 of json.dumps([encode_example(r, tokenizer, template, max_length) for r in the first 400
# pool rows]) with the SmolLM2 tokenizer, computed with the code of d317835 (before chat rows kept
# their turns): instruction rows must train on the very tokens and labels they trained on then.
BEFORE = {
    ("chat", 2048): "7a554a5d2a228c8bd4a21a784943c47e268251161d41ea9f5ee0fb0e1114a1a5",
    ("chat", 64): "c814f70cc29715b23b2f7c4ffeec9e23ef2273d16dc0cb87b98ae55631d91fea",
    ("plain", 2048): "56f91487486cd7e5e603d48cbf2efbf3064ce36391bbc5944e9bf6d6290f1486",
    ("plain", 64): "919a28f6764abba877ccb685ea1927a0dd2b10fc6933cb2cfbc980a59dc71b08",
}


@pytest.fixture(scope="module")
def smollm2(tiny_model: Path):
    return load_tokenizer(tiny_model)


@pytest.fixture(scope="module")
def llama3(tiny_model: Path):
    tokenizer = load_tokenizer(tiny_model)
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.bos_token = "<|begin_of_text|>"
    tokenizer.chat_template = LLAMA3
    return tokenizer


def _answer_spans(rendered: str, header: str, end: str) -> list[tuple[int, int]]:
    """Where each assistant answer lies in the rendering, its end-of-turn marker included."""
    spans, at = [], 0
    for answer in ANSWERS:
        start = rendered.index(header + answer + end, at) + len(header)
        spans.append((start, start + len(answer) + len(end)))
        at = spans[-1][1]
    return spans


@pytest.mark.parametrize(
    ("name", "header", "end"),
    [
        ("smollm2", "<|im_start|>assistant\n", "<|im_end|>\n"),
        ("llama3", "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    ],
)
def test_three_turn_mask_is_the_assistant_turns_of_the_templates_rendering(name, header, end, request):
    """Each token's text is placed in the template's rendering of the whole conversation; it is
    learned exactly when it lies in an assistant answer (its end-of-turn marker included).

    The context before each answer is tokenised on its own, as generation sees it (a prompt, then
    the answer's tokens): with SmolLM2's own template these are the ids of the whole rendering. The
    Llama-3 template on SmolLM2's GPT-2-style pre-tokenizer shows where they differ: the prompt ends
    in "\n\n", one token, which the whole rendering splits as "\n", "\n" before "Paris" (Llama-3's
    own pre-tokenizer keeps the newlines together either way)."""
    tokenizer = request.getfixturevalue(name)
    record = to_record(SHAREGPT, 0, FieldMap())
    assert [m["role"] for m in record.messages] == ["system", "user", "assistant", "user", "assistant"]
    input_ids, labels, cut = encode_example(record, tokenizer, "chat", 2048)
    assert not cut and len(labels) == len(input_ids)

    rendered = tokenizer.apply_chat_template(record.messages, tokenize=False)
    assert rendered.count(header) == 2  # the template's own rendering, both answers in it
    spans = _answer_spans(rendered, header, end)
    # token by token: where each token's text lies in the rendering, and whether that is an answer
    at, learned = 0, []
    for k in range(len(input_ids)):
        upto = tokenizer.decode(input_ids[: k + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert rendered.startswith(upto)
        inside = [s <= at and len(upto) <= e for s, e in spans]
        assert any(inside) or not any(s < len(upto) and at < e for s, e in spans), f"token {k} straddles an answer"
        learned.append(any(inside))
        at = len(upto)
    assert at == len(rendered)  # the ids are the whole rendering, nothing else
    assert labels == [i if keep else IGNORE_INDEX for i, keep in zip(input_ids, learned, strict=True)]
    whole = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert (input_ids == whole) == (name == "smollm2")
    learned_text = tokenizer.decode([i for i in labels if i != IGNORE_INDEX], skip_special_tokens=False)
    assert learned_text == "".join(rendered[s:e] for s, e in spans)


def test_the_librarys_assistant_mask_cannot_see_smollm2s_answers(smollm2):
    """Why daar masks by itself: transformers' (and so TRL's assistant_only_loss) assistant mask needs
    {% generation %} markers in the template, which SmolLM2's has not; it marks no token at all."""
    record = to_record(SHAREGPT, 0, FieldMap())
    found = smollm2.apply_chat_template(record.messages, return_dict=True, return_assistant_tokens_mask=True)
    assert sum(found["assistant_masks"]) == 0
    _, labels, _ = encode_example(record, smollm2, "chat", 2048)
    assert sum(label != IGNORE_INDEX for label in labels) > 10


@pytest.mark.parametrize(("template", "max_length"), list(BEFORE))
def test_an_instruction_row_trains_on_the_tokens_it_trained_on_before(smollm2, real_rows, template, max_length):
    records = [to_record(row, i, FieldMap()) for i, row in enumerate(real_rows)]
    assert not any(r.turns for r in records)
    encoded = [encode_example(r, smollm2, template, max_length) for r in records]
    assert hashlib.sha256(json.dumps(encoded).encode()).hexdigest() == BEFORE[(template, max_length)]


def test_a_cut_conversation_keeps_its_start_and_the_labels_that_fit(smollm2):
    record = to_record(SHAREGPT, 0, FieldMap())
    whole, whole_labels, _ = encode_example(record, smollm2, "chat", 2048)
    first_answer = next(i for i, label in enumerate(whole_labels) if label != IGNORE_INDEX)
    ids, labels, cut = encode_example(record, smollm2, "chat", first_answer + 2)
    assert cut and ids == whole[: first_answer + 2] and labels == whole_labels[: first_answer + 2]
    _, labels, _ = encode_example(record, smollm2, "chat", first_answer)
    examples = build_examples([record], smollm2, "chat", first_answer)
    assert set(labels) == {IGNORE_INDEX} and examples.too_long == 1 and not examples.items


def test_plain_template_keeps_a_chat_row_as_one_turn(smollm2):
    record = to_record(SHAREGPT, 0, FieldMap())
    ids, labels, _ = encode_example(record, smollm2, "plain", 2048)
    learned = smollm2.decode([i for i in labels if i != IGNORE_INDEX], skip_special_tokens=False)
    assert learned == "Rome, since 1871." + smollm2.eos_token
    assert "### Instruction:\nsystem: You are terse.\nuser: What is the capital" in smollm2.decode(ids)


def test_a_template_that_rejects_the_turns_names_the_row(tiny_model):
    tokenizer = load_tokenizer(tiny_model)
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    with pytest.raises(TuneError, match=r"row 'chat-3' \(position 4\).*System role not supported.*--template plain"):
        encode_example(to_record(SHAREGPT, 4, FieldMap()), tokenizer, "chat", 2048)


def test_budgets_and_tuning_count_the_whole_dialogue(tiny_model, real_rows, tmp_path):
    rows = [SHAREGPT | {"id": f"c{i}"} for i in range(4)] + real_rows[:4]
    selection = write_jsonl(tmp_path / "chat.jsonl", rows)
    records = read_pool(selection).records
    counts = TokenCounter(tiny_model, False)(records)
    tokenizer = load_tokenizer(tiny_model)
    assert counts[0] == len(tokenizer.apply_chat_template(records[0].messages, tokenize=True, return_dict=False))
    settings = TuneConfig(device="cpu", max_steps=1, batch_size=8, grad_accum=1, max_length=256)
    result = tune(selection, str(tiny_model), tmp_path / "out", settings)
    assert result.manifest["rows_used"] == 8 and result.manifest["example_tokens"] == int(counts.sum())
