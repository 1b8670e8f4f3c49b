"""Which rows share a forward pass: length-balanced micro-batches under gradient accumulation.

Why: on CPU an optimiser step is grad_accum passes of batch_size rows, each right-padded to its
longest row. Drawn at random, a long row pads the short ones of its pass to its length: on the
shared pool a third of the positions computed were padding (docs/RESULTS.md, Issue 9). The loss
of a step is averaged over every response token of all its rows (the Trainer passes
num_items_in_batch), so how the step's rows are cut into passes does not change its gradient,
only the cost of computing it. We therefore let transformers' BatchRebalanceSampler cut them: it
takes each step's rows from one seeded shuffle and splits them, sorted by length, into grad_accum
passes of varying size and similar padded cost. Its shuffle is the Trainer's random one
(torch.randperm seeded with seed + epoch), so each step trains the very rows it trained with
random passes, and the adapter differs by float rounding only (tests/tune/test_batches.py checks
both).

What we add to the library sampler, and why:
- the run's seed: the Trainer builds the sampler with its fixed default seed (42), so `--seed`
  would no longer change the order of the rows;
- at most one pass per row and epoch: when the last step has fewer rows than grad_accum (rows mod
  batch_size x grad_accum in 1 .. grad_accum - 1) the library fills the missing passes by repeating
  rows from the start of the epoch, training them twice; we drop the repeats, so that last step has
  fewer passes, as with random micro-batches.
The order depends only on the seed and the epoch, so a resumed run skips exactly the passes the
interrupted one made (the Trainer skips batches of the rebuilt sampler and calls its set_epoch).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from transformers import Trainer
from transformers.trainer_pt_utils import BatchRebalanceSampler

BALANCED = "batch_rebalance"
"""The Trainer's name for this sampling strategy (TrainingArguments.train_sampling_strategy)."""


class OnceEachSampler(BatchRebalanceSampler):
    """BatchRebalanceSampler (one process) that yields each row at most once per epoch.

    Only the library's padding of a too-small last step can repeat a row, and there every pass holds
    one row, so dropping repeated rows drops whole passes and leaves every other pass as it was.
    """

    def __init__(self, lengths: list[int], rows_per_step: int, passes: int, seed: int) -> None:
        super().__init__(
            lengths=lengths,
            effective_batch_size=rows_per_step,
            dp_size=1,
            grad_accum=passes,
            seed=seed,
            drop_last=False,
        )

    def __iter__(self) -> Iterator[list[int]]:
        seen: set[int] = set()
        for batch in super().__iter__():
            fresh = [index for index in batch if index not in seen]
            seen.update(fresh)
            if fresh:
                yield fresh

    def __len__(self) -> int:
        # the Trainer derives the passes of the last step from this, so it must count the dropped ones out
        tail = min(self.remainder, self.grad_accum) if self.has_tail else 0
        return self.num_full_batches * self.grad_accum + tail


class TuneTrainer(Trainer):
    """The Trainer, with OnceEachSampler for train_sampling_strategy="batch_rebalance" in one process."""

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = self.train_dataset if train_dataset is None else train_dataset
        args = self.args
        if args.train_sampling_strategy != BALANCED or args.world_size > 1 or dataset is None:
            return super()._get_train_sampler(train_dataset)
        return OnceEachSampler(
            [len(dataset[i]["input_ids"]) for i in range(len(dataset))],
            rows_per_step=args.train_batch_size * args.gradient_accumulation_steps,
            passes=args.gradient_accumulation_steps,
            seed=args.data_seed if args.data_seed is not None else args.seed,
        )
