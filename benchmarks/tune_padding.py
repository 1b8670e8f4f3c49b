"""Padding per optimiser step of `daar tune` on CPU: random passes against length-balanced ones.

    python benchmarks/tune_padding.py --pool ../shared/data/pool/pool.jsonl.gz --rows 3200

Tokenises rows as `daar tune` does (`build_examples`, default TuneConfig: max_length 2048, steps of
4 passes x 4 rows, seed 42, the default model's tokenizer) and cuts one epoch into passes twice:
as the Trainer's random sampler draws them, and as daar.tune.batches balances them (same rows per
step). Prints, per step, the real tokens, the padded positions and the positions computed (real +
padding), the largest pass and the attention term (sum of rows x width^2). `--rows 0` takes the
whole pool in file order, as `daar tune POOL` does; `--first-steps` also prints the steps that a
run with `--max-steps` trains.
"""

from __future__ import annotations

import argparse
import statistics


def _passes(lengths: list[int], sampling: str, settings) -> list[list[int]]:
    from accelerate.data_loader import SeedableRandomSampler

    from daar.tune.batches import OnceEachSampler

    per_step = settings.batch_size * settings.grad_accum
    if sampling == "balanced":
        return list(OnceEachSampler(lengths, per_step, settings.grad_accum, settings.seed))
    order = list(SeedableRandomSampler(range(len(lengths)), data_seed=settings.seed))
    return [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]


def _steps(lengths: list[int], passes: list[list[int]], accum: int) -> list[dict[str, int]]:
    steps = []
    for start in range(0, len(passes), accum):
        chunk = passes[start : start + accum]
        widths = [max(lengths[i] for i in p) for p in chunk]
        positions = [len(p) * w for p, w in zip(chunk, widths, strict=True)]  # per pass, padding included
        real = sum(lengths[i] for p in chunk for i in p)
        steps.append(
            {
                "real": real,
                "padded": sum(positions) - real,
                "computed": sum(positions),
                "largest_pass": max(positions),
                "attention": sum(n * w for n, w in zip(positions, widths, strict=True)),
            }
        )
    return steps


def _table(title: str, lengths: list[int], settings, steps: int | None = None) -> None:
    print(f"\n{title}: {len(lengths)} examples, tokens min / median / max", end=" ")
    print(f"{min(lengths)} / {statistics.median(lengths):.0f} / {max(lengths)}")
    print(f"{'':10}{'steps':>7}{'real':>9}{'padded':>9}{'computed':>10}{'largest pass':>14}{'attention M':>13}")
    for sampling in ("random", "balanced"):
        rows = _steps(lengths, _passes(lengths, sampling, settings), settings.grad_accum)[:steps]
        mean = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
        print(
            f"{sampling:10}{len(rows):7d}{mean['real']:9.0f}{mean['padded']:9.0f}{mean['computed']:10.0f}"
            f"{mean['largest_pass']:14.0f}{mean['attention'] / 1e6:13.1f}"
        )


def main() -> None:
    import numpy as np

    from daar.models import load_tokenizer, resolve_model
    from daar.read import read_pool
    from daar.tune.data import build_examples, choose_template
    from daar.tune.settings import TuneConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True)
    parser.add_argument("--rows", type=int, default=3200, help="random rows to draw (0: the whole pool, in order)")
    parser.add_argument("--draw-seed", type=int, default=0)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--first-steps", type=int, default=0, help="also the first N steps of the whole pool")
    args = parser.parse_args()

    settings = TuneConfig()
    print(f"per step: {settings.grad_accum} passes of {settings.batch_size} rows, max_length {settings.max_length}")
    tokenizer = load_tokenizer(resolve_model(args.model))
    template = choose_template(tokenizer, settings.template)
    records = read_pool(args.pool).records
    drawn = records
    if args.rows:
        picks = np.random.default_rng(args.draw_seed).choice(len(records), args.rows, replace=False)
        drawn = [records[i] for i in sorted(picks)]
    lengths = [len(x["input_ids"]) for x in build_examples(drawn, tokenizer, template, settings.max_length).items]
    _table(f"{len(drawn)} rows (mean per step over one epoch)", lengths, settings)
    if args.first_steps:
        whole = drawn if not args.rows else records
        lengths = [len(x["input_ids"]) for x in build_examples(whole, tokenizer, template, settings.max_length).items]
        _table(f"whole pool, first {args.first_steps} steps (mean per step)", lengths, settings, args.first_steps)


if __name__ == "__main__":
    main()
