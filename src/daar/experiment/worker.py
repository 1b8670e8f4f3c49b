"""One cell in a process of its own: `python -m daar.experiment.worker CELL/job.json`.

The parent (daar.experiment.parallel) writes the job: the experiment's settings, the cell and its
key, where the pool and the shared cache are. This process runs exactly what a sequential run
runs for the cell (`run_cell`, with the experiment's torch threads) and exits 0 once cell.json is
written; a user error exits 2 with its one-line message, anything else keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

from daar.errors import UserError
from daar.experiment.cells import Cell, run_cell
from daar.experiment.config import ExperimentConfig
from daar.experiment.parallel import USER_ERROR_EXIT
from daar.utils.cache import read_json
from daar.utils.machine import torch_threads


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = read_json(Path(args[0]))
    config = ExperimentConfig.model_validate(job["config"])
    cell = Cell(**job["cell"])
    try:
        with torch_threads(config.threads):
            heldout = Path(job["heldout"]) if job.get("heldout") else None
            folder, cache = Path(job["folder"]), Path(job["cache_dir"])
            run_cell(config, cell, Path(job["pool_path"]), folder, cache, job["key"], heldout)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
