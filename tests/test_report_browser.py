"""The report page opened by a real headless Chromium: it renders, shows the table, runs no script.

The screenshot is kept at ``reports/_test_artifacts/report_screenshot.png`` for CI to upload.
Chromium is required: this test fails (it does not skip) when it is missing.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.reporting import write_report
from harness.results.records import RunRecord

ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "_test_artifacts"
WINDOW = (1400, 2000)
_TIMEOUT_S = 120


def _build_record() -> tuple[RunRecord, str]:
    path = Path(__file__).parent / "fixtures" / "report" / "report_records.py"
    spec = importlib.util.spec_from_file_location("report_records", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record: RunRecord = module.build_run_record()
    return record, str(module.SCRIPT_MODEL)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium is required for the report browser test but was not found on PATH; "
        "install it (Debian/Ubuntu: apt-get install -y chromium) — CI installs it",
        pytrace=False,
    )


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"chromium exited {result.returncode}: {result.stderr[-2000:]}"
    return result


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.rows = 0
        self.text: list[str] = []
        self._in_results = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "table":
            self._in_results = a.get("id") == "results-table"
        if tag == "tr" and self._in_results and (a.get("id") or "").startswith("job-"):
            self.rows += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.mark.integration
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    binary = _chromium()
    record, hostile = _build_record()
    paths = write_report(record, tmp_path / record.run_id)
    url = paths.index_html.resolve().as_uri()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report_screenshot.png"
    screenshot.unlink(missing_ok=True)

    _run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={screenshot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        url,
    )
    assert screenshot.is_file(), "chromium did not write the screenshot"
    with Image.open(screenshot) as img:
        assert img.size == WINDOW
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    # A blank or error page has a handful of colours; the table, badges and plots have thousands.
    assert len(colours) > 1000, f"screenshot looks blank: {len(colours)} distinct colours"
    assert counts.max() / counts.sum() < 0.9, "one colour fills more than 90% of the screenshot"

    dom_text = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url).stdout
    dom = _Dom()
    dom.feed(dom_text)
    text = " ".join(dom.text)
    assert dom.rows == len(record.jobs)
    for job in record.jobs:
        assert job.spec.model.name in text
    assert hostile in text  # shown as text ...
    assert "script" not in dom.tags  # ... and never turned into an element
    for word in ("VALID", "INVALID", "FAILED", "fell back to CPU", "Device state", "Settings"):
        assert word in text
    failed = next(j for j in record.jobs if j.status == "failed")
    assert failed.error and failed.error in text
