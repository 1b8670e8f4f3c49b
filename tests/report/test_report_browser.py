"""report.html in a real browser: headless Chromium renders it, runs its scripts and takes a screenshot.

The page marks `<body data-rendered="ok">` after load once every image decoded, and its error
handler writes any script error into #script-errors, so the dumped DOM tells whether it really
rendered. Chromium is installed from Debian's packages when missing (the test set-up's job, not
the developer's); the tests skip, saying why, only when that is impossible.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_runs import make_run

from daar.report import write_report
from daar.report.render import SECTIONS

REPO_RUNS = Path(__file__).resolve().parents[2] / "runs"


def _install_chromium() -> str | None:
    """Try `apt-get install -y chromium` (via sudo when not root); the reason it failed, or None."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "not root and no sudo to install the Debian package chromium"
        prefix = ["sudo", "-n"]
    if shutil.which("apt-get") is None:
        return "no apt-get to install the Debian package chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "chromium"]
    for command in ([*install], [*prefix, "apt-get", "update", "-q"], [*install]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(command)}` timed out"
        if done.returncode == 0 and shutil.which("chromium"):
            return None
    return f"`{' '.join(install)}` failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        reason = _install_chromium()
        path = shutil.which("chromium")
        if path is None:
            pytest.skip(f"headless Chromium is needed for the browser test and could not be installed: {reason}")
    return path


def _browse(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",  # lets the load handler run before the DOM is dumped
        *extra,
        page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("browser")
    runs = [make_run(base / "daar-run", "daar"), make_run(base / "random-run", "random", seed=1)]
    return write_report(runs, base / "out" / "report.html")


def test_report_renders_in_chromium(chromium, report, tmp_path):
    dom = _browse(chromium, report, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body and 'data-rendered="ok"' in body.group(0), (body, dom.stdout[-2000:])
    errors = re.search(r'<ul id="script-errors">(.*?)</ul>', dom.stdout, flags=re.S)
    assert errors is not None and errors.group(1).strip() == ""
    for section_id, _ in SECTIONS:
        assert f'<section id="{section_id}">' in dom.stdout, section_id
    images = re.findall(r"<img [^>]*>", dom.stdout)
    figures = list((report.parent / "figures").glob("*.png"))
    assert len(images) == len(figures) == 7 and f'data-images="{len(images)}"' in body.group(0)

    shot = tmp_path / "report_screenshot.png"
    result = _browse(chromium, report, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,4000")
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    if REPO_RUNS.is_dir():  # for people to look at; gitignored, and the test does not depend on it
        shutil.copyfile(shot, REPO_RUNS / "report_screenshot.png")


def test_script_errors_are_caught(chromium, report, tmp_path):
    """The harness itself: a page with a failing script must not pass as rendered."""
    broken = tmp_path / "broken.html"
    html = report.read_text(encoding="utf-8")
    broken.write_text(html.replace("</main>", "</main><script>notDefinedAnywhere();</script>"), encoding="utf-8")
    dom = _browse(chromium, broken, tmp_path / "profile", "--dump-dom").stdout
    errors = re.search(r'<ul id="script-errors">(.*?)</ul>', dom, flags=re.S)
    assert errors is not None and "notDefinedAnywhere" in errors.group(1)
