"""The examples stage of `daar select` alone: seconds, raw answers, accepted pairs, tokens read and written.

    python benchmarks/examples_stage.py [--model DIR] [--seeds 42] [--out DIR]

Runs `domain_examples` as `daar select` does (default domains and synthesis settings, the
prober's dtype, the packaged SmolLM2-135M-Instruct unless --model) into an empty folder, once per
seed (42 by default, as in `make demo`), and prints for each: wall and CPU seconds of generation
(model load apart), raw answers and accepted pairs per domain, and the token positions the model
read (prompts) and wrote (sampled tokens), counted by a hook on the model's forward, so the figures
compare any version of the code: to time the base commit, run this file with PYTHONPATH pointing
at that commit's src/. Time on an idle machine: on a loaded one even the CPU seconds (the
process's, all threads) grow, with threads spinning while they wait, so compare the counts there.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> None:
    import torch

    from daar.config import DEFAULT_DOMAINS, SelectConfig
    from daar.models.loader import prober_dtype
    from daar.probe.examples import ExampleError, ExampleWriter, domain_examples

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a model folder (default: the packaged default, converted once)")
    parser.add_argument("--seeds", default="42", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--out", type=Path, help="keep each seed's examples folder here (default: a temp folder)")
    args = parser.parse_args()
    if args.model is None:
        from daar.models.builtin import converted_builtin

        args.model = converted_builtin("smollm2-135m-instruct")
    synthesis = SelectConfig().synthesis
    dtype = prober_dtype("auto", "cpu")
    print(f"model {args.model}, {dtype}, {torch.get_num_threads()} threads, {synthesis}")
    for seed in args.seeds:
        counts: Counter = Counter()

        def count(_module, inputs, kwargs, counts: Counter = counts) -> None:
            ids = kwargs.get("input_ids", inputs[0] if inputs else None)
            counts["forward calls"] += 1
            counts["tokens written" if ids.shape[1] == 1 else "tokens read"] += ids.numel()

        start = time.perf_counter()
        writer = ExampleWriter(args.model, synthesis, seed, "cpu", dtype)
        writer.model.register_forward_pre_hook(count, with_kwargs=True)
        load = time.perf_counter() - start
        folder = Path(tempfile.mkdtemp()) if args.out is None else args.out / f"seed{seed}"
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            domain_examples(list(DEFAULT_DOMAINS), folder, lambda w=writer: w, synthesis.min_pairs)
        except ExampleError as err:
            print(f"  {err}")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"seed {seed}: model load {load:.1f} s; examples {wall:.1f} s wall, {cpu:.1f} s CPU; {dict(counts)}")
        for domain in DEFAULT_DOMAINS:
            log = json.loads((folder / f"{domain.name}.raw.json").read_text())
            verdicts = Counter(e["verdict"].split(" (")[0] for e in log)
            print(f"  {domain.name:13s} raw {len(log):3d}  accepted {verdicts['accepted']:2d}  {dict(verdicts)}")
        logs = [json.loads((folder / f"{d.name}.raw.json").read_text()) for d in DEFAULT_DOMAINS]
        accepted = sum(e["verdict"] == "accepted" for log in logs for e in log)
        print(f"  total raw {sum(len(log) for log in logs)}, accepted {accepted}, folder {folder}")


if __name__ == "__main__":
    main()
