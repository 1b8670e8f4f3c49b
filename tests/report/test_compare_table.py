"""benchmarks/compare_selectors.py: its table from run folders, and its driver with a stand-in run_select."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from report_runs import make_run

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_selectors.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare_selectors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_row_reads_ground_truth_and_overlap(compare, tmp_path):
    daar = make_run(tmp_path / "daar", "daar")
    rand = make_run(tmp_path / "random", "random", seed=1)
    reference = compare.run_ids(daar)
    assert len(reference[0]) == 12 and len(reference[1]) == 57
    own = compare.summarize_run("daar", daar, 12.34, reference)
    other = compare.summarize_run("random", rand, 1.0, reference)
    truth = json.loads((daar / "analysis.json").read_text())["ground_truth"]
    assert own["domain_counts"] == truth["mix"]["selected"]["counts"]
    assert own["inter"] == truth["selected"]["inter_diversity"] and own["overlap_with_daar"] == 1.0
    plain = json.loads((rand / "analysis.json").read_text())["ground_truth"]
    assert other["entropy"] == plain["mix"]["selected"]["entropy"] and other["intra"] is not None
    common = len(set(reference[0]) & set(compare.run_ids(rand)[0]))
    assert other["overlap_with_daar"] == common / 12 and other["jaccard_with_daar"] == common / (24 - common)

    compare.write_tables([own, other], tmp_path, "note")
    markdown = (tmp_path / "table.md").read_text()
    assert markdown.startswith("note\n") and "| daar | 12.3 | 57 | 12 |" in markdown
    with open(tmp_path / "table.csv", newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0][4:7] == ["coding", "mathematics", "reasoning"] and [r[0] for r in table[1:]] == ["daar", "random"]
    assert sum(int(x) for x in table[2][4:7]) == 12


@dataclass
class FakeResult:
    out_dir: Path
    manifest: dict
    selected_ids: list[str]


def test_overlap_counts_only_rows_both_runs_scored(compare):
    reference = (["a", "b", "c"], {"a", "b", "c", "d", "e", "f"})
    assert compare.overlap(["a", "x"], {"a", "x", "d"}, reference) == (1.0, 1.0)  # x was not in D's sample
    assert compare.overlap(["a", "d"], {"a", "d", "x"}, reference) == (0.5, 0.5)
    assert compare.overlap(["x"], {"x", "y"}, reference) == (None, None)  # disjoint samples: no overlap to speak of
    assert compare.overlap(["d", "e"], {"d", "e", "f"}, reference) == (0.0, 0.0)


def test_driver_runs_every_method_and_writes_report(compare, tmp_path, monkeypatch):
    calls = []

    def run_select(config, pool_path, out_dir, *, cache_dir=None, show_domain_field=None, report=True):
        calls.append((config.method, config.sample, cache_dir, show_domain_field))
        make_run(out_dir, config.method, seed=len(calls))
        return FakeResult(out_dir, {}, compare.run_ids(out_dir)[0])

    monkeypatch.setitem(sys.modules, "daar.pipeline", types.SimpleNamespace(run_select=run_select))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("{}\n")
    out = tmp_path / "cmp"
    args = ["--pool", str(pool), "--methods", "random,daar,ifd", "--sample", "50", "--ifd-sample", "20"]
    assert compare.main([*args, "--out", str(out)]) == 0
    assert [c[0] for c in calls] == ["daar", "random", "ifd"]  # daar first: it is the reference
    assert [c[1] for c in calls] == [50, 50, 20] and {c[2] for c in calls} == {out / "cache"}
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert rows[0]["overlap_with_daar"] == 1.0 and all(r["overlap_with_daar"] is not None for r in rows)
    html = (out / "report.html").read_text()
    assert all(f"<td>{m}</td>" in html for m in ("daar", "random", "ifd"))
