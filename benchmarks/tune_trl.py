"""daar's tuning loop against TRL's SFTTrainer on the same examples: CPU seconds and step losses.

    pip install trl==1.16.0   # not a daar dependency: this benchmark is why (README, "Tuning")
    OMP_NUM_THREADS=1 python benchmarks/tune_trl.py --pool ../shared/data/pool/pool.jsonl.gz

Both train the SmolLM2-135M learner with the same LoRA adapter (dropout off), the same tokenised
examples (daar's encoding: TRL's assistant-only loss cannot mask SmolLM2's template, which has no
{% generation %} markers, tests/tune/test_chat.py), the same length-balanced passes (4 x 4 rows per
step) and the same optimiser settings; SFTTrainer with gradient checkpointing off (TRL turns it on
by default) and padding_free as --packing says. Each trainer runs in a process of its own, taking
turns --repeats times. Printed per run: CPU seconds of `train()`, tokens per CPU second and the
logged loss of each step; last, the exact mean loss of the first step's rows, computed directly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _examples(args):
    from daar.models import load_tokenizer, resolve_model
    from daar.read import read_pool
    from daar.tune.data import build_examples

    folder = resolve_model(args.model)
    tokenizer = load_tokenizer(folder)
    records = read_pool(args.pool).records[: args.rows]
    return folder, tokenizer, build_examples(records, tokenizer, "chat", 2048).items


def _sft_trainer(model, tokenizer, items, out: Path, settings, args):
    import datasets
    from trl import SFTConfig, SFTTrainer

    from daar.tune.batches import BALANCED, OnceEachSampler

    class Balanced(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            a = self.args
            lengths = [len(ids) for ids in self.train_dataset["input_ids"]]
            per_step = a.train_batch_size * a.gradient_accumulation_steps
            return OnceEachSampler(lengths, per_step, a.gradient_accumulation_steps, a.seed)

    config = SFTConfig(
        output_dir=str(out / "ck"),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.lr,
        warmup_steps=float(settings.warmup_ratio),
        lr_scheduler_type=settings.scheduler,
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=True,
        report_to="none",
        dataloader_num_workers=0,
        gradient_checkpointing=False,
        max_length=None,
        padding_free=args.packing,
        train_sampling_strategy=BALANCED,
        include_num_input_tokens_seen="all" if args.packing else "non_padding",
    )
    dataset = datasets.Dataset.from_list(items)
    return Balanced(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)


def once(args) -> dict:
    import torch

    from daar.tune.lora import _lora_model, _trainer
    from daar.tune.settings import TuneConfig

    torch.set_num_threads(1)
    folder, tokenizer, items = _examples(args)
    settings = TuneConfig(device="cpu", max_steps=args.steps, packing=args.packing, dropout=0.0, logging_steps=1)
    model = _lora_model(folder, settings, torch.float32, "cpu")
    out = Path(f"/tmp/tune-trl-bench-{args.trainer}")
    if args.trainer == "daar":
        trainer, _ = _trainer(model, tokenizer, items, out / "ck", out, settings, torch.float32, "cpu")
    else:
        trainer = _sft_trainer(model, tokenizer, items, out, settings, args)
    started = time.process_time()
    trainer.train()
    cpu = time.process_time() - started
    tokens = int(trainer.state.num_input_tokens_seen)
    losses = [round(h["loss"], 6) for h in trainer.state.log_history if "loss" in h]
    return {
        "trainer": args.trainer,
        "cpu_seconds": round(cpu, 2),
        "tokens_per_cpu_second": round(tokens / cpu, 1),
        "losses": losses,
    }


def first_step_loss(args) -> float:
    """The mean loss over every learned token of the first step's 16 rows: what step 1 should log."""
    import torch

    from daar.tune.batches import OnceEachSampler
    from daar.tune.data import PadCollator
    from daar.tune.lora import _lora_model
    from daar.tune.settings import TuneConfig

    torch.set_num_threads(1)
    folder, tokenizer, items = _examples(args)
    settings = TuneConfig(dropout=0.0)
    passes = list(OnceEachSampler([len(x["input_ids"]) for x in items], 16, 4, settings.seed))[:4]
    model = _lora_model(folder, settings, torch.float32, "cpu")
    with torch.no_grad():
        return float(model(**PadCollator(int(tokenizer.pad_token_id))([items[i] for p in passes for i in p])).loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--packing", action="store_true", help="packed passes (daar's GPU default) for both")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trainer", choices=["daar", "trl"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trainer:
        print(json.dumps(once(args)), flush=True)
        return
    for _ in range(args.repeats):
        for trainer in ("daar", "trl"):
            command = [sys.executable, __file__, *sys.argv[1:], "--trainer", trainer]
            out = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ)
            print(out.stdout.strip().splitlines()[-1], flush=True)
    print(json.dumps({"exact_first_step_loss": round(first_step_loss(args), 6)}))


if __name__ == "__main__":
    main()
