"""LoRA supervised fine-tuning of the learner on a selection (docs/METHOD.md, step 9).

The training loop is the transformers Trainer with a peft adapter, because checkpointing, resume,
gradient accumulation and mixed precision are easy to get subtly wrong by hand. What this module
adds is the part the paper's numbers depend on: loss on the assistant's turns only (daar.tune.data),
the paper's defaults, a content key so a finished run is reused instead of retrained, and a
manifest written last so a folder without one is known to be unfinished.
Not TRL's SFTTrainer: its assistant-only loss needs {% generation %} markers, which SmolLM2's
template lacks (tests/tune/test_chat.py), and it took 20-30% more CPU per step (benchmarks/tune_trl.py).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from daar.models import fingerprint, load_causal_lm, load_tokenizer, pick_device, pick_dtype
from daar.models import resolve_model as _resolve_model
from daar.models.adapter import TUNE_MANIFEST, adapter_fingerprint, check_adapter, load_tuned
from daar.read import check_pool, read_pool
from daar.tune.callbacks import TrainLogCallback
from daar.tune.data import ExampleDataset, PadCollator, TuneError, build_examples, choose_template, pack_collator
from daar.tune.settings import TuneConfig
from daar.utils.cache import read_json, stable_key, write_json
from daar.utils.lock import folder_lock
from daar.utils.machine import package_versions
from daar.utils.progress import console

MANIFEST = TUNE_MANIFEST
TRAIN_LOG = "train_log.jsonl"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
# Settings that change how a run is carried out or reported, never the adapter it produces.
_NOT_IN_KEY = {
    "merge",
    "resume",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "keep_checkpoints",
    "device",
    "dtype",  # keyed as resolved (bf16 or fp32), below
    "cache_dir",
    "init_adapter",  # keyed by its content instead of its path
}


@dataclass
class TuneResult:
    """Where the outputs are and what the run did; `cached` means nothing was trained this time."""

    out_dir: Path
    adapter_dir: Path
    merged_dir: Path | None
    manifest: dict[str, Any]
    cached: bool

    @property
    def steps(self) -> int:
        return int(self.manifest.get("steps", 0))

    @property
    def final_loss(self) -> float | None:
        return self.manifest.get("final_loss")

    def summary(self) -> dict[str, Any]:
        """What a caller records of a tuning run (experiment cells, co-evolution rounds)."""
        m = self.manifest
        return {
            "cached": self.cached,
            "steps": self.steps,
            "final_loss": self.final_loss,
            "rows_used": m.get("rows_used"),
            "tokens": m.get("example_tokens"),  # training tokens of one epoch (prompt and response)
            "tokens_per_second": m.get("tokens_per_second"),
            "train_seconds": m.get("seconds"),
            "device": m.get("device"),
            "dtype": m.get("dtype"),
        }


def tune(selection: Path, model: str, out_dir: Path, settings: TuneConfig | None = None) -> TuneResult:
    """LoRA-tune `model` on `selection` into `out_dir`, holding the folder's lock (see `_tune`)."""
    check_pool(selection)  # before the output folder is made
    with folder_lock(Path(out_dir), "daar tune"):
        return _tune(selection, model, out_dir, settings)


def _tune(selection: Path, model: str, out_dir: Path, settings: TuneConfig | None = None) -> TuneResult:
    """Fine-tune `model` with LoRA on the rows of `selection`; outputs go to `out_dir`.

    Raises PoolError (bad selection), ModelError (model not found) or TuneError (nothing to train
    on, checkpoints from other settings), all ValueErrors with a message fit for a user.
    """
    settings = settings or TuneConfig()
    out_dir = Path(out_dir)
    pool = read_pool(selection)
    folder = _resolve_model(model)
    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    records = pool.records[: settings.max_rows] if settings.max_rows else pool.records
    tokenizer = load_tokenizer(folder, trust_remote_code=settings.trust_remote_code)
    template = choose_template(tokenizer, settings.template)
    keyed = {k: v for k, v in settings.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
    if not balanced_sampling(settings, device):
        del keyed["sampling"]  # trained as before the setting existed: same key, the old adapter is reused
    packing, compiled = uses_packing(settings, device), settings.compile
    keyed |= {"packing": packing, "compile": compiled}
    if template == "chat" and any(record.turns for record in records):
        keyed["chat_turns"] = True  # chat rows once trained as one flattened turn: not the adapter of before
    for name in ("packing", "compile"):
        if not keyed[name]:
            del keyed[name]  # off: trained as before these settings existed, the old adapter is reused
    key = stable_key(
        keyed,
        fingerprint(folder),
        pool.sha256,
        len(records),
        template,
        str(dtype),
        adapter_fingerprint(settings.init_adapter) if settings.init_adapter else None,
    )

    cached = _cached_result(out_dir, key, settings.merge)
    if cached is not None:
        return cached

    manifest_path = out_dir / MANIFEST
    if manifest_path.exists():
        manifest_path.unlink()  # outputs will change: a folder without a manifest reads as unfinished
    checkpoints = out_dir / "checkpoints"
    resume_from = _prepare_checkpoints(checkpoints, key, settings.resume)
    if resume_from is None:
        (out_dir / TRAIN_LOG).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "merged", ignore_errors=True)  # it would belong to the previous adapter

    examples = build_examples(records, tokenizer, template, settings.max_length)
    if not examples.items:
        raise TuneError(
            f"{selection}: none of the {len(records)} rows leaves room for a response within "
            f"max_length={settings.max_length} tokens"
        )

    started = time.perf_counter()
    peft_model = _lora_model(folder, settings, dtype, device)
    trainer, log = _trainer(peft_model, tokenizer, examples.items, checkpoints, out_dir, settings, dtype, device)
    compile_error = None
    try:
        output = trainer.train(resume_from_checkpoint=resume_from)
    except Exception as err:  # only a compiler's own failure is retried, without compiling
        if not compiled or not type(err).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise
        compile_error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        console.print(f"[yellow]torch.compile failed ({compile_error}); tuning without it[/]")
        settings = settings.model_copy(update={"compile": False})
        peft_model = _lora_model(folder, settings, dtype, device)
        trainer, log = _trainer(peft_model, tokenizer, examples.items, checkpoints, out_dir, settings, dtype, device)
        output = trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.perf_counter() - started

    state = trainer.state
    steps_this_run = int(state.global_step) - log.first_step
    tokens_this_run = int(state.num_input_tokens_seen) - int(getattr(trainer, "_initial_num_input_tokens_seen", 0))
    loop_seconds = float(output.metrics.get("train_runtime", train_seconds))

    _save_adapter(peft_model, tokenizer, out_dir)
    merged_dir = _merge(peft_model, tokenizer, out_dir) if settings.merge else None
    if not settings.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)

    manifest = {
        "key": key,
        "kind": "lora",
        "settings": settings.model_dump(mode="json"),
        "model": {"name": model, "path": str(folder), "fingerprint": fingerprint(folder)},
        "selection": {
            "path": str(Path(selection).resolve()),
            "sha256": pool.sha256,
            "rows_in": pool.rows_in,
            "records": len(pool.records),
            "rejected": len(pool.rejected),
        },
        "template": template,
        "rows_used": len(examples.items),
        "rows_too_long": examples.too_long,
        "rows_truncated": examples.truncated,
        "example_tokens": examples.tokens,
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "passes_per_step": micro_batches(settings, device)[1],
        "sampler": "balanced" if balanced_sampling(settings, device) else "random",
        "packing": packing,
        "compiled": settings.compile,
        "compile_error": compile_error,
        "steps": int(state.global_step),
        "resumed_from_step": log.first_step,
        "steps_this_run": steps_this_run,
        "epochs": float(state.epoch or 0.0),
        "final_loss": log.last_loss,
        "train_loss": float(output.training_loss) if steps_this_run else None,
        "seconds": round(train_seconds, 3),
        "train_loop_seconds": round(loop_seconds, 3),
        "seconds_per_step": round(loop_seconds / steps_this_run, 4) if steps_this_run else None,
        "tokens_this_run": tokens_this_run,
        "tokens_per_second": round(tokens_this_run / loop_seconds, 1) if loop_seconds > 0 else None,
        "trainable_parameters": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
        "merged": merged_dir is not None,
        "versions": package_versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(manifest_path, manifest)  # last: its presence marks the folder as finished
    return TuneResult(out_dir, out_dir, merged_dir, manifest, cached=False)


def _cached_result(out_dir: Path, key: str, merge: bool) -> TuneResult | None:
    """The finished run in out_dir if it was made from the same inputs; merges on demand."""
    path = out_dir / MANIFEST
    if not path.exists() or not all((out_dir / name).exists() for name in ADAPTER_FILES):
        return None
    try:
        manifest = read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("key") != key:
        return None
    merged_dir = out_dir / "merged"
    if merge and not (merged_dir / "config.json").exists():
        # the adapter is there; merging needs no training, only the base model
        model, tokenizer = load_tuned(manifest["model"]["path"], out_dir, device="cpu", merge=False)
        _merge(model, tokenizer, out_dir)
        manifest["merged"] = True
        write_json(path, manifest)
    return TuneResult(out_dir, out_dir, merged_dir if merge or manifest.get("merged") else None, manifest, True)


def _prepare_checkpoints(checkpoints: Path, key: str, resume: bool) -> str | None:
    """The checkpoint to resume from, or None after clearing stale ones for a fresh start."""
    from transformers.trainer_utils import get_last_checkpoint

    key_file = checkpoints / "run_key.json"
    if resume and checkpoints.is_dir():
        last = get_last_checkpoint(str(checkpoints))
        if last is not None:
            saved = read_json(key_file).get("key") if key_file.exists() else None
            if saved != key:
                raise TuneError(
                    f"{checkpoints} holds checkpoints made with other settings, data or model; "
                    "run without --resume to start over"
                )
            console.print(f"[bold]resuming[/] from {last}")
            return last
    if resume:
        console.print(f"[yellow]no checkpoint in {checkpoints}; starting from step 0[/]")
    shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoints.mkdir(parents=True, exist_ok=True)
    write_json(key_file, {"key": key})
    return None


def _lora_model(folder: Path, settings: TuneConfig, dtype: torch.dtype, device: str):
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    base = load_causal_lm(folder, dtype=dtype, device=device, trust_remote_code=settings.trust_remote_code)
    base.config.use_cache = False  # the KV cache is only for generation and costs memory in training
    if settings.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    set_seed(settings.seed)  # the adapter's A matrices are drawn here, before the Trainer seeds anything
    if settings.init_adapter is not None:
        from peft import PeftModel

        check_adapter(settings.init_adapter, folder, str(folder))
        model = PeftModel.from_pretrained(base, settings.init_adapter, is_trainable=True)
        if settings.compile:
            compile_layers(model)
        return model
    lora = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    if settings.compile:
        compile_layers(model)
    return model


def _trainer(model, tokenizer, items, checkpoints: Path, out_dir: Path, settings: TuneConfig, dtype, device):
    from transformers import TrainingArguments

    from daar.tune.batches import BALANCED, TuneTrainer

    micro, accum = micro_batches(settings, device)
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        learning_rate=settings.lr,
        # a float in [0, 1) is read by the Trainer as a fraction of all steps (the paper's 5% warm-up)
        warmup_steps=float(settings.warmup_ratio),
        lr_scheduler_type=settings.scheduler,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        # packed rows hold no padding, and their EOS tokens (often the pad id too) are real tokens
        include_num_input_tokens_seen="all" if uses_packing(settings, device) else "non_padding",
        train_sampling_strategy=BALANCED if balanced_sampling(settings, device) else "random",
    )
    log = TrainLogCallback(out_dir / TRAIN_LOG)
    trainer = TuneTrainer(
        model=model,
        args=args,
        data_collator=pack_collator() if uses_packing(settings, device) else PadCollator(int(tokenizer.pad_token_id)),
        train_dataset=ExampleDataset(items),
        processing_class=tokenizer,
        callbacks=[log],
    )
    return trainer, log


def micro_batches(settings: TuneConfig, device: str) -> tuple[int, int]:
    """(rows per forward pass, passes per optimiser step) for the effective batch of the settings."""
    effective = settings.batch_size * settings.grad_accum
    micro = settings.micro_batch_size or (effective if device != "cpu" else settings.batch_size)
    return micro, effective // micro  # TuneConfig checks that an explicit micro_batch_size divides


def uses_packing(settings: TuneConfig, device: str) -> bool:
    """Packed passes: as set, else when a step is one pass (on a GPU, by default)."""
    return settings.packing if settings.packing is not None else micro_batches(settings, device)[1] == 1


def compile_layers(model: torch.nn.Module) -> int:
    """torch.compile every decoder layer in place, shapes dynamic (packed steps vary in length); the
    layers share their code, so one compilation serves them all. Returns how many were compiled."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    layers = max(lists, key=len, default=None)  # the decoder's stack: the longest list of modules
    if layers is None:
        return 0
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def balanced_sampling(settings: TuneConfig, device: str) -> bool:
    """Whether a step's rows are cut into passes by length (daar.tune.batches): only with several passes."""
    return settings.sampling == "balanced" and micro_batches(settings, device)[1] > 1


def _save_adapter(peft_model, tokenizer, out_dir: Path) -> None:
    """Adapter and tokenizer into out_dir, each file written whole before it replaces an old one."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out_dir))
    try:
        peft_model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        for item in staging.iterdir():
            if item.is_file():
                item.replace(out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _merge(peft_model, tokenizer, out_dir: Path) -> Path:
    """The adapter folded into the base weights, saved as a plain model in out_dir/merged."""
    merged = peft_model.merge_and_unload()
    merged.config.use_cache = True
    target = out_dir / "merged"
    staging = Path(tempfile.mkdtemp(prefix=".merged-", dir=out_dir))
    try:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
