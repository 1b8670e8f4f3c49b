"""report.html from hand-built run folders: every section, figures on disk, nothing remote, text escaped."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest
import typer
from report_runs import EVIL, make_run
from typer.testing import CliRunner

from daar.report import ReportError, write_report
from daar.report.commands import register
from daar.report.render import SECTIONS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return make_run(base / "daar-run", "daar"), make_run(base / "random-run", "random", seed=1)


def _sections(html: str) -> dict[str, str]:
    """Section id -> its inner HTML."""
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', html, flags=re.S))


def test_daar_report_has_every_section_and_inline_figures(runs, tmp_path):
    out = write_report([runs[0]], tmp_path / "one" / "report.html")
    html = out.read_text(encoding="utf-8")
    sections = _sections(html)
    assert list(sections) == [sid for sid, _ in SECTIONS]
    pngs = sorted(p.name for p in (out.parent / "figures").glob("*.png"))
    assert pngs == ["entropy_hist.png", "map.png", "mix_0.png", "mix_1.png", "reward_hist.png"]
    inline = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(inline) == len(pngs) == html.count("<img ")
    on_disk = {(out.parent / "figures" / name).read_bytes() for name in pngs}
    assert {base64.b64decode(data) for data in inline} == on_disk and all(p.startswith(PNG) for p in on_disk)
    assert "rows_in 60 = selected 12 + not_selected 45 + rejected 3" in sections["counts"]
    assert "empty output" in sections["counts"] and "40.0" in sections["counts"]
    assert "0.8125" in sections["probe"] and "0.0123" in sections["probe"]
    assert "not available" not in html
    assert (
        "3 raw model answers" in sections["examples"]
        and "unparseable 1, too similar to an accepted pair 1" in sections["examples"]
    )
    assert "by pseudo_domain" in sections["mix"] and "ground truth: domain" in sections["mix"]
    assert "one run only" in sections["comparison"]
    warning = re.findall(r'<p class="warning" data-kind="dominant_pseudo_domain">(.*?)</p>', html, flags=re.S)
    assert len(warning) == 1 and "holds 60%" in warning[0] and "&lt;script&gt;" in warning[0]


def test_report_loads_nothing_remote_and_escapes_model_text(runs, tmp_path):
    html = write_report([runs[0]], tmp_path / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.I)
    assert not re.search(r"<link\b|@import|url\(", html)
    assert EVIL not in html and "alert(" not in html.replace("alert(&#39;owned&#39;)", "")
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; &amp; escaping" in html
    assert html.count("<script>") == 2  # the report's own two scripts, nothing else


def test_random_run_says_not_available(runs, tmp_path):
    out = write_report([runs[1]])
    assert out == runs[1] / "report.html"
    sections = _sections(out.read_text(encoding="utf-8"))
    for sid in ("examples", "pseudo-domains", "probe", "map"):
        assert "not available for method random" in sections[sid], sid
    assert "histograms of entropy and predicted reward: not available for method random" in sections["histograms"]
    assert "Score of method random" in sections["histograms"]
    assert sections["mix"].count("<h3>by ") == 1 and "by ground truth: domain" in sections["mix"]
    assert sorted(p.name for p in (out.parent / "figures").glob("*.png")) == ["mix_0.png", "score_hist.png"]


def test_side_by_side_comparison(runs, tmp_path):
    out = write_report(list(runs), tmp_path / "cmp.html")
    table = _sections(out.read_text(encoding="utf-8"))["comparison"]
    ids = []
    for run in runs:
        scores = pd.read_parquet(run / "scores.parquet")
        ids.append(set(scores.loc[scores["selected"], "id"]))
    overlap = len(ids[0] & ids[1]) / len(ids[1])
    rows = re.findall(r"<tr><td>(.*?)</tr>", table, flags=re.S)
    assert [r.split("</td>")[0] for r in rows] == ["daar-run", "random-run"]
    assert f"{overlap:.3f}" in rows[1] and "1.000" in rows[0]
    names = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"daar-run_map.png", "random-run_score_hist.png"} <= names


def test_run_without_analysis_shows_the_manifest_mix(tmp_path):
    run = make_run(tmp_path / "lengths", "output_length")
    (run / "analysis.json").write_text('{"available": false, "reason": "no prober features for this pool"}')
    (run / "scores.parquet").unlink()
    sections = _sections(write_report([run]).read_text(encoding="utf-8"))
    assert "not available for method output_length (no prober features for this pool)" in sections["mix"]
    assert "by ground truth: domain" in sections["mix"]  # from manifest.json
    assert "12" in sections["mix"]


def test_user_given_examples_are_shown(tmp_path):
    """Examples from an examples file (and from the config's domains) when none were generated."""
    import json
    import shutil

    run = make_run(tmp_path / "given", "daar")
    shutil.rmtree(run / "examples")
    examples_file = tmp_path / "seeds.yaml"
    examples_file.write_text("coding:\n  - {instruction: 'Reverse a list <b>', output: 'xs[::-1]'}\n")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["config"]["examples_file"] = str(examples_file)
    manifest["config"]["domains"][1]["examples"] = [{"instruction": "What is 2+2?", "input": "", "output": "4"}]
    (run / "manifest.json").write_text(json.dumps(manifest))
    shown = _sections(write_report([run]).read_text(encoding="utf-8"))["examples"]
    assert "coding: 1 accepted (examples file" in shown and "Reverse a list &lt;b&gt;" in shown
    assert "mathematics: 1 accepted (given in the config)" in shown and "not available" not in shown
    manifest["method"] = manifest["config"]["method"] = "random"  # a baseline never used them
    del manifest["probe"]
    (run / "manifest.json").write_text(json.dumps(manifest))
    shown = _sections(write_report([run]).read_text(encoding="utf-8"))["examples"]
    assert "not available for method random" in shown and "Reverse a list" not in shown


def test_not_a_run_folder(tmp_path):
    with pytest.raises(ReportError, match="no manifest.json"):
        write_report([tmp_path])
    (tmp_path / "manifest.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ReportError, match="cannot read it as JSON"):
        write_report([tmp_path])


def test_cli(runs, tmp_path):
    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `report` a named subcommand
    runner = CliRunner()
    out = tmp_path / "cli" / "r.html"
    result = runner.invoke(app, ["report", str(runs[0]), str(runs[1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "wrote" in result.output
    for bad in (tmp_path / "absent", tmp_path):
        result = runner.invoke(app, ["report", str(bad)])
        assert result.exit_code == 2
        assert "error:" in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
