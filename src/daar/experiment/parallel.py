"""Cells at once: each cell in a process of its own, several per GPU, spread over the GPUs.

Why processes: a 135M learner's tuning step is bound by Python and kernel launches, not by the
GPU (an H200 tuned at 5-7k tokens/s, about 1% of the chip), so the way to use the chip is to run
more cells on it; threads would share one interpreter lock, processes each get a core. A cell's
process writes only the cell's folder and reads the shared cache, whose entries lock themselves
(daar.utils.lock), and writes cell.json last, exactly as `run_cell` does in the parent; the
parent reads it back. So a parallel run leaves the same files as a sequential one, cell by cell
(tests/experiment/test_parallel.py), and an interrupted one resumes the same way.

On a CPU the default is one cell at a time: a cell's tuning already uses the cores it is given.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from daar.errors import UserError
from daar.experiment.cells import Cell, load_cell, matched_cell
from daar.experiment.config import ExperimentConfig
from daar.models import pick_device
from daar.utils.cache import write_json
from daar.utils.progress import console

JOB_FILE = "job.json"
LOG_FILE = "worker.log"
PER_GPU = 8  # cells per GPU at most: each needs a CPU core for its launches and a few GB of memory
USER_ERROR_EXIT = 2


def auto_parallel(device: str) -> int:
    """Cells at once when the config does not say: 1 on a CPU; on GPUs, up to PER_GPU each, no more
    than one per two CPU cores (a cell's process keeps one core busy launching kernels)."""
    import torch


    if pick_device(device) == "cpu":
        return 1
    gpus = max(1, torch.cuda.device_count())
    per_gpu = max(1, min(PER_GPU, (os.cpu_count() or 2) // (2 * gpus)))
    return gpus * per_gpu


def visible_gpus() -> list[str]:
    """The GPUs a child may be given, as CUDA_VISIBLE_DEVICES spells them (none on a CPU machine)."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [part.strip() for part in listed.split(",") if part.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass
class Job:
    cell: Cell
    process: subprocess.Popen
    log: IO[bytes]
    gpu: str | None
    started: float


def run_cells(
    config: ExperimentConfig,
    cells: list[Cell],
    results: dict[str, dict[str, Any] | None],
    keys: dict[str, str],
    paths: dict[str, Path],
    workers: int,
    report: Callable[[int, Cell, dict[str, Any]], None],
) -> list[str]:
    """Compute every cell of `cells` that has no result, `workers` at a time; fills `results`.

    `paths` holds pool_path, out_dir and cache_dir. A cell that matches another's tokens starts
    when that one is done. A failed cell stops new starts; the running ones finish, then the
    failure is raised with the end of its log.
    """
    order = {cell.name: i for i, cell in enumerate(cells, start=1)}
    todo = [cell for cell in cells if results[cell.name] is None]
    gpus = visible_gpus()
    running: list[Job] = []
    computed: list[str] = []
    failed: list[tuple[Job, int]] = []
    try:
        while todo or running:
            while not failed and len(running) < workers:
                ready = next((c for c in todo if _ready(config, c, results)), None)
                if ready is None:
                    break
                todo.remove(ready)
                running.append(_start(config, ready, keys[ready.name], paths, _least_used(gpus, running)))
                gpu = f" on GPU {running[-1].gpu}" if running[-1].gpu is not None else ""
                console.print(f"[{order[ready.name]}/{len(cells)}] {ready.name}: [bold]running[/]{gpu}")
            if not running:
                if failed or not todo:
                    break
                raise RuntimeError(f"cells {[c.name for c in todo]} wait for cells that cannot run; please report")
            time.sleep(0.2)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                job.log.close()
                result = load_cell(paths["out_dir"] / "cells" / job.cell.name, keys[job.cell.name])
                if job.process.returncode != 0 or result is None:
                    failed.append((job, job.process.returncode))
                    continue
                results[job.cell.name] = result
                computed.append(job.cell.name)
                report(order[job.cell.name], job.cell, result)
    finally:
        for job in running:  # interrupted: stop the children too, their cells resume on the next run
            job.process.terminate()
            job.process.wait()
            job.log.close()
    if failed:
        job, code = failed[0]
        log = paths["out_dir"] / "cells" / job.cell.name / LOG_FILE
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.is_file() else ""
        error = UserError if code == USER_ERROR_EXIT else RuntimeError
        raise error(f"cell {job.cell.name} failed (exit code {code}); its log is {log}:\n{tail}")
    return computed


def _ready(config: ExperimentConfig, cell: Cell, results: dict[str, dict[str, Any] | None]) -> bool:
    other = matched_cell(config, cell)
    return other is None or results.get(other.name) is not None


def _least_used(gpus: list[str], running: list[Job]) -> str | None:
    if not gpus:
        return None
    return min(gpus, key=lambda gpu: sum(1 for job in running if job.gpu == gpu))


def _start(config: ExperimentConfig, cell: Cell, key: str, paths: dict[str, Path], gpu: str | None) -> Job:
    folder = paths["out_dir"] / "cells" / cell.name
    folder.mkdir(parents=True, exist_ok=True)
    job = {
        "config": config.result_dict(),
        "cell": {"method": cell.method, "ratio": cell.ratio, "seed": cell.seed, "draw": cell.draw},
        "pool_path": str(Path(paths["pool_path"]).resolve()),
        "folder": str(folder.resolve()),
        "cache_dir": str(Path(paths["cache_dir"]).resolve()),
        "key": key,
        "heldout": str(Path(paths["heldout"]).resolve()) if paths.get("heldout") else None,
    }
    write_json(folder / JOB_FILE, job)
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    log = open(folder / LOG_FILE, "wb")  # noqa: SIM115 - closed when the child ends
    process = subprocess.Popen(
        [sys.executable, "-m", "daar.experiment.worker", str(folder / JOB_FILE)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    return Job(cell, process, log, gpu, time.perf_counter())
