"""LoRA tuning on the tiny random Llama with real pool rows: masking, learning, resume, merge, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import typer
from conftest import write_jsonl
from typer.testing import CliRunner

from daar.models import load_tokenizer
from daar.tune import (
    IGNORE_INDEX,
    MANIFEST,
    TRAIN_LOG,
    TuneConfig,
    TuneError,
    build_examples,
    choose_template,
    encode_prompt,
    encode_response,
    load_tuned,
    mask_prompt,
    tune,
)
from daar.tune.callbacks import TrainLogCallback
from daar.tune.commands import register
from daar.tune.data import PadCollator


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP spin-waiting makes two threads ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def selection(real_rows, tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("sel") / "selection.jsonl", real_rows[:32])


@pytest.fixture(scope="module")
def trained(tiny_model, selection, tmp_path_factory):
    """One real run shared by several tests: 24 steps at a high lr so the tiny model visibly learns."""
    settings = TuneConfig(
        lr=2e-2, warmup_ratio=0.0, batch_size=4, grad_accum=1, epochs=3, max_length=128, logging_steps=1
    )
    out = tmp_path_factory.mktemp("tuned")
    return tune(selection, str(tiny_model), out, settings), settings


def _response_loss(model, tokenizer, rows: list[dict], max_length: int = 128) -> float:
    """Mean response-token loss over rows, computed the same way training does."""
    from daar.config import FieldMap
    from daar.read.records import to_record

    records = [to_record(row, i, FieldMap()) for i, row in enumerate(rows)]
    examples = build_examples(records, tokenizer, "chat", max_length)
    batch = PadCollator(tokenizer.pad_token_id)(examples.items)
    with torch.no_grad():
        return float(model(**batch).loss)


def test_labels_mask_the_prompt_on_a_real_example(tiny_model, real_rows):
    tokenizer = load_tokenizer(tiny_model)
    row = next(r for r in real_rows if r.get("input"))  # a row with an input field exercises record.prompt
    prompt = f"{row['instruction'].strip()}\n\n{row['input'].strip()}"
    assert choose_template(tokenizer) == "chat"
    prompt_ids = encode_prompt(tokenizer, prompt, "chat")
    response_ids = encode_response(tokenizer, prompt, row["output"].strip(), "chat")
    input_ids, labels = mask_prompt(prompt_ids, response_ids, max_length=4096)

    assert input_ids == prompt_ids + response_ids
    assert labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert labels[len(prompt_ids) :] == response_ids
    assert tokenizer.decode(input_ids[: len(prompt_ids)]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(labels[len(prompt_ids) :]) == row["output"].strip() + "<|im_end|>\n"

    # cut inside the response: the prompt stays whole, the response is shortened
    input_ids, labels = mask_prompt(prompt_ids, response_ids, max_length=len(prompt_ids) + 3)
    assert labels[-3:] == response_ids[:3] and len(input_ids) == len(prompt_ids) + 3
    # a prompt that fills the window leaves nothing to learn
    _, labels = mask_prompt(prompt_ids, response_ids, max_length=len(prompt_ids))
    assert set(labels) == {IGNORE_INDEX}

    # plain template: response ends with EOS, which keeps its label although EOS is also the pad token
    plain = encode_response(tokenizer, prompt, "42", "plain")
    assert plain[-1] == tokenizer.eos_token_id == tokenizer.pad_token_id
    batch = PadCollator(tokenizer.pad_token_id)(
        [{"input_ids": [5, 6, 2], "labels": [IGNORE_INDEX, 6, 2]}, {"input_ids": [7], "labels": [7]}]
    )
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 2], [7, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_training_lowers_the_loss_and_writes_outputs(trained, tiny_model, real_rows):
    result, settings = trained
    out = result.out_dir
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", TRAIN_LOG, MANIFEST):
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists()  # removed once the adapter is safely written

    log = [json.loads(line) for line in (out / TRAIN_LOG).read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 25))
    assert all({"step", "loss", "lr", "epoch"} <= row.keys() for row in log)
    first, last = (sum(r["loss"] for r in part) / 4 for part in (log[:4], log[-4:]))
    assert last < first - 0.05, (first, last)

    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["rows_used"] == 32 and manifest["selection"]["rejected"] == 0
    assert manifest["steps"] == 24 and manifest["final_loss"] == pytest.approx(log[-1]["loss"])
    assert manifest["template"] == "chat" and manifest["settings"]["rank"] == 8
    assert manifest["tokens_per_second"] > 0 and "peft" in manifest["versions"]

    # the adapter loads back, changes the outputs, and fits the training rows better than the base
    base, tokenizer = load_tuned(str(tiny_model), None, device="cpu")
    tuned, _ = load_tuned(str(tiny_model), out, device="cpu")
    ids = torch.tensor([encode_prompt(tokenizer, "What is 7 times 6?", "chat")])
    with torch.no_grad():
        delta = (tuned(ids).logits - base(ids).logits).abs().max().item()
    assert delta > 1e-3
    rows = real_rows[:32]
    assert _response_loss(tuned, tokenizer, rows) < _response_loss(base, tokenizer, rows) - 0.05

    # same inputs and settings: reused, not retrained
    again = tune(Path(manifest["selection"]["path"]), str(tiny_model), out, settings)
    assert again.cached and again.manifest["key"] == manifest["key"]


def test_resume_continues_from_checkpoint_and_merge_loads(tiny_model, selection, tmp_path, monkeypatch):
    """Resumed in the second epoch, after a skipped step, with balanced passes: the same adapter as one run."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    settings = TuneConfig(  # 9 of 13 rows fit 64 tokens; 4 rows in 2 passes a step: 3 steps an epoch, the last of 1 row
        lr=1e-2, batch_size=2, grad_accum=2, max_rows=13, max_steps=6, save_steps=2, logging_steps=1, max_length=64
    )
    original = TrainLogCallback.on_step_end

    def crash_at_step_5(self, args, state, control, **kwargs):
        if state.global_step == 5:
            raise RuntimeError("simulated crash")
        return original(self, args, state, control, **kwargs)

    monkeypatch.setattr(TrainLogCallback, "on_step_end", crash_at_step_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tune(selection, str(tiny_model), out, settings)
    monkeypatch.setattr(TrainLogCallback, "on_step_end", original)
    assert not (out / MANIFEST).exists()  # unfinished
    assert (out / "checkpoints" / "checkpoint-4").is_dir()

    with pytest.raises(TuneError, match="other settings"):
        tune(selection, str(tiny_model), out, settings.model_copy(update={"resume": True, "lr": 1e-3}))

    result = tune(selection, str(tiny_model), out, settings.model_copy(update={"resume": True, "merge": True}))
    m = result.manifest
    assert (m["resumed_from_step"], m["steps_this_run"], m["steps"]) == (4, 2, 6)
    steps = [json.loads(line)["step"] for line in (out / TRAIN_LOG).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6] and m["sampler"] == "balanced" and m["epochs"] == 2

    straight = tune(selection, str(tiny_model), tmp_path / "straight", settings)
    assert straight.manifest["key"] == m["key"]
    resumed, uninterrupted = (load_file(str(d / "adapter_model.safetensors")) for d in (out, tmp_path / "straight"))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.allclose(resumed[k], uninterrupted[k], rtol=0, atol=1e-6) for k in resumed)

    merged = AutoModelForCausalLM.from_pretrained(result.merged_dir).eval()
    unmerged, tokenizer = load_tuned(str(tiny_model), out, device="cpu", merge=False)
    ids = torch.tensor([encode_prompt(tokenizer, "Name a prime number.", "chat")])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, unmerged(ids).logits, atol=1e-4)


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so the command is addressed as `tune` like in the real CLI
        """daar"""

    register(app)
    return app


def test_cli_end_to_end_and_clear_errors(tiny_model, selection, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["tune", str(selection), "--model", str(tiny_model), "--out", str(out)]
    fast = ["--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--max-length", "64", "--rank", "4"]
    result = runner.invoke(_cli(), args + fast)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["steps"] == 2 and manifest["settings"]["rank"] == 4

    missing = runner.invoke(_cli(), ["tune", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2
    assert "no such file" in missing.output and "Traceback" not in missing.output

    bad = runner.invoke(_cli(), args + ["--rank", "0"])
    assert bad.exit_code == 2 and "--rank" in bad.output
    bad = runner.invoke(_cli(), args + ["--sampling", "sorted"])
    assert bad.exit_code == 2 and "--sampling" in bad.output

    no_model = runner.invoke(_cli(), ["tune", str(selection), "--model", str(tmp_path / "nomodel"), "--out", str(out)])
    assert no_model.exit_code == 2 and "hub id" in no_model.output


def test_one_pass_of_the_whole_batch_trains_the_same_adapter_as_accumulation(tiny_model, selection, tmp_path):
    """micro_batch_size only changes how the effective batch is cut into forward passes."""
    from safetensors.torch import load_file

    from daar.tune.lora import micro_batches

    common = dict(lr=2e-2, warmup_ratio=0.0, batch_size=4, grad_accum=4, epochs=1, max_length=128, dropout=0.0)
    accumulated = tune(selection, str(tiny_model), tmp_path / "a", TuneConfig(**common, micro_batch_size=4))
    fused = tune(selection, str(tiny_model), tmp_path / "b", TuneConfig(**common, micro_batch_size=16))
    assert accumulated.steps == fused.steps == 2
    a = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    # the same gradients up to float summation order (Adam turns that noise on near-zero
    # gradients into sign flips of single entries, so the comparison is over the whole adapter)
    diff = torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in a))
    assert diff < 0.01 * torch.sqrt(sum((a[k] ** 2).sum() for k in a))
    losses = [[json.loads(line)["loss"] for line in (tmp_path / x / TRAIN_LOG).read_text().splitlines()] for x in "ab"]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    assert micro_batches(TuneConfig(batch_size=4, grad_accum=4), "cuda") == (16, 1)
    assert micro_batches(TuneConfig(batch_size=4, grad_accum=4), "cpu") == (4, 4)
    with pytest.raises(ValueError, match="must divide"):
        TuneConfig(batch_size=4, grad_accum=4, micro_batch_size=5)  # refused before any work


def test_evaluation_refuses_an_adapter_from_another_base(trained, tmp_path, tiny_model):
    """One adapter loader for tune and eval: the base-model check holds for `daar eval` too."""
    import shutil

    from daar.evaluate import evaluate
    from daar.models import ModelError

    other = tmp_path / "other-base"
    shutil.copytree(tiny_model, other)
    config = json.loads((other / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3  # same shapes, another model
    (other / "config.json").write_text(json.dumps(config))
    result, _ = trained
    with pytest.raises(ModelError, match="trained on another base model"):
        evaluate(str(other), adapter=result.adapter_dir, tasks=["nq"], mode="nll", limit=2, device="cpu")
    with pytest.raises(ModelError, match="trained on another base model"):
        load_tuned(str(other), result.adapter_dir, device="cpu")
