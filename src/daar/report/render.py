"""`write_report`: one self-contained report.html (figures inline as base64 PNG) plus figures/*.png.

Self-contained because a report is mailed, archived and opened on machines without network access:
nothing in it may load from elsewhere. Jinja's autoescape escapes every value, and user or model
text (seed pairs, raw model answers, file paths) only ever reaches the page as a value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from daar import __version__
from daar.report import build
from daar.report.figures import PngFigure, save_figures
from daar.report.load import DomainExamples, ReportError, RunData, label_runs, load_run, verdict_text
from daar.utils.cache import write_text
from daar.utils.progress import console

TEMPLATE_NAME = "report.html.j2"  # in src/daar/resources (package data)

SECTIONS = [
    ("settings", "Settings"),
    ("counts", "Counts & timings"),
    ("examples", "Examples"),
    ("pseudo-domains", "Pseudo-domains"),
    ("probe", "Probe & reward"),
    ("histograms", "Histograms"),
    ("map", "Map"),
    ("mix", "Domain mix"),
    ("rounds", "Co-evolution rounds"),
    ("comparison", "Comparison"),
]


def write_report(run_dirs: list[Path], out: Path | None = None, manifest: dict[str, Any] | None = None) -> Path:
    """Render the runs into `out` (default: FIRST_RUN/report.html) and their figures into figures/ beside it.

    `manifest`: the manifest of a single run that is still writing its outputs (see `load_run`)."""
    if not run_dirs:
        raise ReportError("give at least one run folder")
    if manifest is not None and len(run_dirs) != 1:
        raise ValueError("a pending manifest is for a single run")
    runs = [load_run(Path(d), manifest) for d in run_dirs]
    label_runs(runs)
    out = Path(out) if out is not None else runs[0].path / "report.html"
    figures: list[PngFigure] = []
    views = []
    for run in runs:
        view, run_figures = _run_view(run, prefix="" if len(runs) == 1 else f"{run.label}_")
        views.append(view)
        figures += run_figures
    html = render_html(views, build.comparison_rows(runs))
    save_figures(figures, out.parent / "figures")
    write_text(out, html)
    return out


def render_html(views: list[dict[str, Any]], comparison: list[dict[str, Any]]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string((resources.files("daar") / "resources" / TEMPLATE_NAME).read_text(encoding="utf-8"))
    title = ", ".join(f"{v['label']} ({v['method']})" for v in views)
    return template.render(
        title=title,
        runs=views,
        comparison=comparison,
        sections=SECTIONS,
        written=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        fmt=build.fmt,
        grid={key: side_by_side(views, key) for key in ("settings", "more_settings", "versions", "counts", "stages")},
    )


def side_by_side(views: list[dict[str, Any]], key: str) -> list[tuple[str, list[str]]]:
    """Rows of one table with a column per run: the union of the runs' (name, value) pairs under
    `key`, in first-seen order, "-" where a run lacks a name. Runs differ mostly in a few settings,
    so one table shows at a glance what changed between them."""
    names: dict[str, None] = {}
    for view in views:
        names.update(dict.fromkeys(name for name, _ in view[key]))
    values = [dict(view[key]) for view in views]
    return [(name, [v.get(name, "-") for v in values]) for name in names]


def _run_view(run: RunData, prefix: str) -> tuple[dict[str, Any], list[PngFigure]]:
    """Template values for one run, and the figures it drew (to be saved as PNG files)."""
    manifest = run.manifest
    histograms, hist_notes = build.histogram_figures(run, prefix)
    map_png = build.map_section(run, prefix)
    mix = build.mix_sections(run, prefix)
    rounds = build.rounds_section(run, prefix)
    stages = build.stage_rows(manifest)
    settings = build.settings_rows(run.config)
    input_info = manifest.get("input") or {}
    versions = [(k, str(v)) for k, v in (manifest.get("versions") or {}).items()]
    versions += [(f"machine {k}", str(v)) for k, v in (manifest.get("machine") or {}).items()]
    view = {
        "label": run.label,
        "method": run.method,
        "settings": [
            ("folder", str(run.path)),
            ("created", str(manifest.get("created", "-"))),
            ("input", str(input_info.get("path", "-"))),
            ("input sha256", str(input_info.get("sha256", "-"))[:16] + "…"),
            *[row for row in settings if build.is_key_setting(row[0])],
        ],
        "more_settings": [row for row in settings if not build.is_key_setting(row[0])],
        "versions": [("daar", str(manifest.get("daar_version", "-"))), *versions],
        "counts": [(k, build.fmt(v)) for k, v in run.counts.items()],
        "equation": build.count_equation(run.counts),
        "rejected": list(run.rejected_reasons.items()),
        "stages": [(s["name"], build.fmt(s["seconds"], 1) + (" (cached)" if s["cached"] else "")) for s in stages],
        "total_seconds": sum(s["seconds"] or 0.0 for s in stages),
        "examples": [_example_view(s) for s in run.examples],
        "pseudo": build.pseudo_domains(run),
        "probe": build.probe_metrics(run),
        "histograms": histograms,
        "hist_notes": hist_notes,
        "map": map_png,
        "mix": mix,
        "analysis_note": build.analysis_note(run),
        "warnings": list(manifest.get("warnings") or []),
        "fields": [
            (name, [(v, c["rows"], c["kept"], f"{100 * c['share_kept']:.1f}") for v, c in shown["values"].items()])
            for name, shown in (manifest.get("shown_fields") or {}).items()
        ],
        "rounds": rounds,
    }
    figures = histograms + ([map_png] if map_png else []) + [m["figure"] for m in mix]
    figures += rounds["figures"] if rounds else []
    return view, figures


def _example_view(examples: DomainExamples) -> dict[str, Any]:
    raw = None
    if examples.raw is not None:
        raw = [
            {
                "stage": str(r.get("stage", "-")),
                "verdict": verdict_text(r.get("verdict")),
                "raw": r.get("raw", ""),
                "answer": r.get("answer"),
            }
            for r in examples.raw
        ]
    return {
        "domain": examples.domain,
        "accepted": examples.accepted,
        "source": examples.source,
        "raw": raw,
        "verdicts": examples.verdicts,
    }


def write_report_safely(out_dir: Path, manifest: dict[str, Any]) -> None:
    """report.html for a run folder; a failure is a warning, never the loss of the selection."""
    try:
        write_report([out_dir], manifest=manifest)
    except Exception as err:  # a figure must never cost the user the selection itself
        console.print(f"[yellow]warning:[/] the report could not be written: {err}")
