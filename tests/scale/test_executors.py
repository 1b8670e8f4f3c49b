"""Executors by name, their resource checks, and the read-ahead the local executor scores behind."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from daar.errors import UserError
from daar.scale.executors import make_executor
from daar.scale.score import ahead


def test_scoring_code_does_not_import_ray():
    """`--executor ray` is found by name: importing and running the local path never loads Ray."""
    code = (
        "import sys, daar.scale.score, daar.scale.fit, daar.scale.cut\n"
        "from daar.scale.executors import make_executor\n"
        "make_executor('local')\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.endswith('ray_executor')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_executor_and_bad_resources_are_user_errors():
    with pytest.raises(UserError, match="unknown executor 'dask'; expected one of local, ray"):
        make_executor("dask")
    with pytest.raises(UserError, match="above 1 must be a whole number"):
        make_executor("local", gpus_per_worker=1.5)
    with pytest.raises(UserError, match="must be 0 or more"):
        make_executor("local", gpus_per_worker=-1)
    with pytest.raises(UserError, match="GPUs per worker are for --executor ray"):
        make_executor("local", gpus_per_worker=0.5)
    with pytest.raises(UserError, match="--workers must be at least 1"):
        make_executor("local", workers=0)


def test_gpu_actors_fit_the_cluster():
    pytest.importorskip("ray")
    from daar.scale.ray_executor import fit_actors

    assert fit_actors(2, 1, 0.5) == (2, None)  # two actors share one GPU
    assert fit_actors(8, 4, 1) == (4, "4 GPUs hold 4 actors of 1 GPU: 4 score, not 8")
    assert fit_actors(3, 0, 0) == (3, None)  # the CPU path
    count, note = fit_actors(3, 2, 0)
    assert count == 3 and "actors run on CPU unless --gpus-per-worker" in note
    with pytest.raises(UserError, match="--gpus-per-worker 1: the Ray cluster has 0 GPUs"):
        fit_actors(1, 0, 1)


def test_read_ahead_keeps_order_raises_the_workers_error_and_stops_early():
    assert list(ahead(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("row 7 is broken")

    got = []
    with pytest.raises(ValueError, match="row 7 is broken"):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1]

    produced, closed = [], threading.Event()

    def endless():
        try:
            for i in range(10**9):
                produced.append(i)
                yield i
        finally:
            closed.set()

    for item in ahead(endless()):
        if item == 3:
            break
    assert closed.wait(5) and len(produced) <= 6  # the worker stopped about where the reader did
