"""A cached result is keyed by the code it runs: the import closure of its entry module.

Edits are made to a copy of the package, and the digest is taken of that copy, exactly as the
installed package's digest is taken for a cell, a score or a co-evolution round.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from daar.coevolve.rounds import CODE as ROUND_ENTRY
from daar.evaluate.settings import SCORING_ENTRY
from daar.experiment.cells import CELL_ENTRY
from daar.utils.code import ROOT, closure, closure_digest


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    copy = tmp_path / "daar"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _edit(package: Path, relative: str) -> None:
    path = package / relative
    path.write_text(path.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")


@pytest.mark.parametrize(
    "module",
    [
        "probe/heads.py",  # left out of the first study's hand list
        "embed/features.py",
        "select/base.py",
        "select/model_scored.py",
        "select/subclusters.py",
        "tune/lora.py",  # reached only through daar.tune's lazy exports
        "experiment/heldout.py",
    ],
)
def test_an_edit_to_code_a_cell_runs_changes_its_key(package: Path, module: str) -> None:
    before = closure_digest(CELL_ENTRY, package)
    _edit(package, module)
    assert closure_digest(CELL_ENTRY, package) != before


@pytest.mark.parametrize(
    "module", ["report/render.py", "report/build.py", "experiment/table.py", "analyze/commands.py"]
)
def test_an_edit_to_code_that_only_presents_results_keeps_the_key(package: Path, module: str) -> None:
    before = closure_digest(CELL_ENTRY, package)
    _edit(package, module)
    assert closure_digest(CELL_ENTRY, package) == before


def test_scoring_and_rounds_are_keyed_by_their_closures(package: Path) -> None:
    scoring = set(closure(SCORING_ENTRY, package))
    assert {"daar.evaluate.harness", "daar.evaluate.kinds", "daar.evaluate._sandbox_program"} <= scoring
    assert "daar.select.daar" not in scoring  # a score does not depend on how rows were selected
    rounds = set(closure(ROUND_ENTRY, package))
    assert {"daar.probe.heads", "daar.tune.lora", "daar.select.daar", "daar.evaluate.runner"} <= rounds
    before = closure_digest(SCORING_ENTRY, package)
    _edit(package, "evaluate/metrics.py")
    assert closure_digest(SCORING_ENTRY, package) != before
