"""Seconds per training step of a DaaR head on this CPU, at a prober's width, for several schedules.

    python benchmarks/heads_cpu.py [--width 3584] [--rows 4850] [--steps 20] [--batches 1,8,64] [--threads 1,2]

The heads are MLPs d -> 2d -> d -> d/2 -> 256 -> K (58 M parameters at Qwen2-7B's width 3584).
Each step is timed through `train_head` itself (one epoch over `steps x batch` random rows, no
validation, less a two-step run's set-up), so the figures include everything a real step does;
the estimate scales them to `rows` training rows per epoch (5,000 probe rows less validation).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from daar.config import HeadConfig
    from daar.probe.heads import train_head
    from daar.utils.machine import torch_threads

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=3584)
    parser.add_argument("--rows", type=int, default=4850)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", default="1,8,64", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--threads", default="1,2", type=lambda s: [int(x) for x in s.split(",")])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"width {args.width}, torch {torch.__version__}, {torch.get_num_threads()} threads available")
    for batch in args.batches:
        x = rng.normal(size=(args.steps * batch, args.width)).astype(np.float32)
        y = rng.integers(0, 4, size=len(x))
        cfg = HeadConfig(lr=1e-5, epochs=1, batch_size=batch, patience=None, val_fraction=0)
        for threads in args.threads:
            with torch_threads(threads):
                train_head(x[: 2 * batch], y[: 2 * batch], "classify", 4, cfg, seed=0)  # warm-up, untimed
                start = time.perf_counter()
                train_head(x[: 2 * batch], y[: 2 * batch], "classify", 4, cfg, seed=0)  # set-up and two steps
                setup = time.perf_counter() - start
                start = time.perf_counter()
                train_head(x, y, "classify", 4, cfg, seed=0)
                step = (time.perf_counter() - start - setup) / (args.steps - 2)
            epoch = step * -(-args.rows // batch)
            print(f"batch {batch:>3}, {threads} thread(s): {step:.3f} s/step, epoch of {args.rows} rows {epoch:.0f} s")


if __name__ == "__main__":
    main()
