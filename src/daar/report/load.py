"""Read what `daar select` left in a run folder, tolerating every optional file being absent.

Only `manifest.json` makes a folder a run; scores, examples, analysis and map are each optional (a
random-method run has no probe, no reward and no examples), so every loader returns None for a
missing file and the report says "not available" for that section rather than failing. A file
that exists but cannot be parsed is an error: it means a broken run, which the user should know.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from daar.errors import UserError


class ReportError(UserError):
    """A folder is not a run, or one of its files is unreadable; the CLI prints it as one line."""


@dataclass
class DomainExamples:
    """Seeds of one domain: accepted pairs (generated or given) and the raw model answers, if kept."""

    domain: str
    accepted: list[dict[str, str]]
    raw: list[dict[str, Any]] | None
    source: str  # "generated" or "config"

    @property
    def verdicts(self) -> dict[str, int]:
        """Raw answers per verdict kind; details in parentheses (a cosine value) are left out of the kind."""
        return dict(Counter(verdict_text(item.get("verdict")).split(" (")[0] for item in self.raw or []))


@dataclass
class RunData:
    """Everything the report shows about one run folder."""

    path: Path
    manifest: dict[str, Any]
    scores: pd.DataFrame | None = None
    examples: list[DomainExamples] = field(default_factory=list)
    analysis: dict[str, Any] | None = None
    map: dict[str, Any] | None = None
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    label: str = ""

    @property
    def method(self) -> str:
        return str(self.manifest.get("method") or self.config.get("method") or "unknown")

    @property
    def config(self) -> dict[str, Any]:
        config = self.manifest.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def counts(self) -> dict[str, Any]:
        counts = self.manifest.get("counts")
        return counts if isinstance(counts, dict) else {}

    def selected_ids(self) -> list[str] | None:
        """Ids of the selected rows, from scores.parquet (else selected.jsonl), or None if neither exists."""
        if self.scores is not None and {"id", "selected"} <= set(self.scores.columns):
            return self.scores.loc[self.scores["selected"].astype(bool), "id"].astype(str).tolist()
        path = self.path / "selected.jsonl"
        if not path.exists():
            return None
        id_field = str((self.config.get("fields") or {}).get("id", "id"))
        ids = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if id_field in row:
                    ids.append(str(row[id_field]))
        return ids

    def scored_ids(self) -> set[str] | None:
        """Ids of every row the run scored (its sample), or None without scores.parquet."""
        if self.scores is None or "id" not in self.scores.columns:
            return None
        return set(self.scores["id"].astype(str))

    def column(self, name: str) -> pd.Series | None:
        if self.scores is None or name not in self.scores.columns:
            return None
        return self.scores[name]


def load_run(path: Path, manifest: dict[str, Any] | None = None) -> RunData:
    """A run folder's files; ReportError if `path` is not a folder written by `daar select`.

    `manifest` stands in for manifest.json while a run writes its own report: the manifest is the
    run's last file, so it does not exist yet."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder (give the run folder that `daar select --out` wrote)")
    manifest_path = path / "manifest.json"
    if manifest is None and not manifest_path.exists():
        raise ReportError(f"{path}: no manifest.json, so it is not a finished `daar select` run folder")
    manifest = manifest if manifest is not None else _read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise ReportError(f"{manifest_path}: expected a JSON object")
    run = RunData(path=path, manifest=manifest)
    run.scores = _read_scores(path / "scores.parquet")
    analysis = _read_json(path / "analysis.json") if (path / "analysis.json").exists() else None
    run.analysis = analysis if isinstance(analysis, dict) else None
    map_data = _read_json(path / "map.json") if (path / "map.json").exists() else None
    run.map = map_data if isinstance(map_data, dict) and map_data.get("points") else None
    # Seeds a user gave are part of every run's config, but only a run that built centroids used them.
    uses_examples = run.method == "daar" or "probe" in manifest
    folder = path / "examples" if (path / "examples").is_dir() else path / "seeds"  # "seeds": runs before 0.2
    run.examples = _read_examples(folder, _renamed(run.config) if uses_examples else {})
    run.rejected_reasons = _read_rejected(path / "rejected.jsonl")
    return run


def label_runs(runs: list[RunData]) -> None:
    """Give each run a short unique label (folder name, then method, then a number) for tables and files."""
    seen: Counter[str] = Counter()
    for run in runs:
        base = _slug(run.path.resolve().name) or _slug(run.method) or "run"
        seen[base] += 1
        run.label = base if seen[base] == 1 else f"{base}-{seen[base]}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read it as JSON ({err})") from err


def _read_scores(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for a damaged file
        raise ReportError(f"{path}: cannot read it as parquet ({err})") from err


def _read_examples(folder: Path, config: dict[str, Any]) -> list[DomainExamples]:
    """Generated examples from examples/<domain>.json (+ .raw.json); for the other domains, the example
    rows the user gave (in the config's domains, or in its examples_file when that file is still readable)."""
    result: list[DomainExamples] = []
    if folder.is_dir():
        for file in sorted(folder.glob("*.json")):
            if file.name.endswith(".raw.json"):
                continue
            data = _read_json(file)
            domain = str(data.get("domain", file.stem)) if isinstance(data, dict) else file.stem
            accepted = data.get("accepted", []) if isinstance(data, dict) else []
            raw_path = file.with_name(f"{file.stem}.raw.json")
            raw = _read_json(raw_path) if raw_path.exists() else None
            raw_list = [r if isinstance(r, dict) else {"raw": r} for r in raw] if isinstance(raw, list) else None
            result.append(DomainExamples(domain, [_pair(p) for p in accepted], raw_list, "generated"))
    given: dict[str, tuple[list[Any], str]] = {}
    for domain in config.get("domains") or []:
        if isinstance(domain, dict) and domain.get("examples"):
            given[str(domain.get("name"))] = (domain["examples"], "given in the config")
    if config.get("examples_file"):
        source = f"examples file {config['examples_file']}"
        given |= {name: (rows, source) for name, rows in _examples_file(config).items()}
    done = {d.domain for d in result}
    for name, (rows, source) in given.items():
        if name not in done:
            result.append(DomainExamples(name, [_pair(p) for p in rows], None, source))
    return result


def _renamed(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings with the names examples had before 0.2 (seeds, seeds_file) read as today's."""
    config = dict(config)
    if "seeds_file" in config and "examples_file" not in config:
        config["examples_file"] = config.pop("seeds_file")
    domains = config.get("domains") or []
    config["domains"] = [
        {**d, "examples": d.get("examples") or d.get("seeds") or []} if isinstance(d, dict) else d for d in domains
    ]
    return config


def _examples_file(config: dict[str, Any]) -> dict[str, list[Any]]:
    """{domain: rows} from the run's examples file (a mapping, or a list of {name, examples}); {} if gone."""
    import yaml

    try:
        data = yaml.safe_load(Path(config["examples_file"]).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}  # moved or edited since the run: the report still renders, without those examples
    if isinstance(data, list):
        data = {str(item.get("name")): item.get("examples") or [] for item in data if isinstance(item, dict)}
    return {str(k): v for k, v in data.items() if isinstance(v, list)} if isinstance(data, dict) else {}


def _read_rejected(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    reasons: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                reasons[str(json.loads(line).get("reason", "unknown"))] += 1
            except (json.JSONDecodeError, AttributeError):
                reasons["unreadable line"] += 1
    return dict(reasons.most_common())


def _pair(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        return {"instruction": str(item), "input": "", "output": ""}
    return {key: str(item.get(key) or "") for key in ("instruction", "input", "output")}


def verdict_text(verdict: Any) -> str:
    if isinstance(verdict, dict):
        return str(verdict.get("status") or verdict.get("verdict") or json.dumps(verdict, sort_keys=True))
    return "none" if verdict is None else str(verdict)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")[:40]


def finite(value: Any) -> float | None:
    """A float for display, or None for missing / NaN values (JSON null, pandas NaN)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
