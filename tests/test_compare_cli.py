"""`harness compare` end to end: subprocesses against a real SQLite store.

One test measures two real runs of the demo model with ``harness bench``; the others save
hand-made runs (real runner documents with seeded samples) with ``ResultStore.save_run`` so the
outcome is known in advance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.demo import demo_model_paths
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION
from harness.results.store import ResultStore
from tests.test_compare import SHA_B, lognormal_ms, make_failed_job, make_job, make_run

QUICK = ["--runs", "10", "--warmup", "2", "--min-duration-s", "0.05"]


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # stdout is a pipe, as in CI: the table must come out unfolded whatever the width
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def table_rows(stdout: str) -> list[list[str]]:
    """The data rows of rich's box table: lines starting with the vertical bar."""
    rows = []
    for line in stdout.splitlines():
        if line[:1] in ("│", "┃"):  # data rows, and the header row (heavy bars)
            rows.append([cell.strip() for cell in line.replace("┃", "│").strip("│").split("│")])
    return rows


def save_runs(db: Path, slower_factor: float, runtime_version: str = "1.32.0") -> None:
    """A base run and a new run of the same two jobs; the first job's new median is scaled."""
    base = make_run(
        "20261130-140000-aaaa",
        make_job(0, lognormal_ms(200, seed=1)),
        make_job(1, lognormal_ms(200, 8.0, seed=3), model="resnet", sha256=SHA_B),
        created_at="2026-11-30T14:00:00+00:00",
    )
    new = make_run(
        "20261130-150000-bbbb",
        make_job(
            0, lognormal_ms(200, 3.0 * slower_factor, seed=2), runtime_version=runtime_version
        ),
        make_failed_job(1, model="resnet", sha256=SHA_B),
        created_at="2026-11-30T15:00:00+00:00",
    )
    with ResultStore(db) as store:
        store.save_run(base)
        store.save_run(new)


def test_compare_two_real_bench_runs(tmp_path: Path) -> None:
    model = str(demo_model_paths()["digits_mlp.onnx"])
    db = ["--db", str(tmp_path / "results.sqlite")]
    for _ in range(2):
        bench = harness("bench", model, *QUICK, *db, "--no-report", cwd=tmp_path)
        assert bench.returncode == EXIT_OK, bench.stderr

    proc = harness("compare", "--last", *db, "--out", str(tmp_path / "ci"), cwd=tmp_path)
    assert proc.returncode in (EXIT_OK, EXIT_REGRESSION), proc.stderr
    header, *rows = table_rows(proc.stdout)
    assert header == [
        "model",
        "device",
        "threads",
        "provider",
        "base median ms",
        "new median ms",
        "ratio [CI]",
        "p",
        "mark",
    ]
    (row,) = rows
    assert row[0] == "digits_mlp" and row[1] == "local"
    assert float(row[4]) > 0 and float(row[5]) > 0
    assert row[7] == "<1e-4" or 0.0 <= float(row[7]) <= 1.0
    assert row[8] in ("+", "-", "~")
    assert (row[8] == "+") == (proc.returncode == EXIT_REGRESSION)
    assert "1 pairs" in proc.stdout and "0 unmatched" in proc.stdout
    markdown = (tmp_path / "ci" / "compare.md").read_text()
    assert "| model | device |" in markdown and "| digits_mlp |" in markdown

    # --json names the runs in store order: the older one is the base
    payload = json.loads(harness("compare", "--last", *db, "--json", cwd=tmp_path).stdout)
    runs = ResultStore(tmp_path / "results.sqlite").list_runs()
    assert (payload["base_run_id"], payload["new_run_id"]) == (runs[1].run_id, runs[0].run_id)
    assert payload["pairs"][0]["mark"] == row[8]


def test_thirty_percent_slower_exits_3_with_a_plus(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    save_runs(db, 1.3)
    proc = harness(
        "compare", "20261130-140000-aaaa", "20261130-150000-bbbb", "--db", str(db), cwd=tmp_path
    )
    assert proc.returncode == EXIT_REGRESSION, proc.stderr
    rows = {row[0]: row for row in table_rows(proc.stdout)[1:]}
    assert rows["mobilenet"][8] == "+"
    assert float(rows["mobilenet"][6].split()[0]) > 1.2
    assert rows["resnet"][8] == "x"
    assert "new job 1 failed: device local unreachable" in proc.stdout
    assert "REGRESSION in 1 job(s)" in proc.stdout

    as_json = harness("compare", "--last", "--db", str(db), "--json", cwd=tmp_path)
    assert as_json.returncode == EXIT_REGRESSION
    payload = json.loads(as_json.stdout)
    assert payload["has_regression"] is True
    assert [pair["mark"] for pair in payload["pairs"]] == ["+", "x"]


def test_unchanged_runs_exit_0(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    save_runs(db, 1.0)
    proc = harness("compare", "--last", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert [row[8] for row in table_rows(proc.stdout)[1:]] == ["~", "x"]
    assert "no regression" in proc.stdout


def test_runtime_version_mismatch_exits_1_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    save_runs(db, 1.0, runtime_version="1.33.0")
    proc = harness("compare", "--last", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "runtime_version" in lines[0] and "1.33.0" in lines[0]
    assert "--allow-different runtime_version" in lines[0]

    allowed = harness(
        "compare", "--last", "--db", str(db), "--allow-different", "runtime_version", cwd=tmp_path
    )
    assert allowed.returncode == EXIT_OK, allowed.stderr
    assert table_rows(allowed.stdout)[1][8] == "!"
    assert "runtime_version 1.32.0 -> 1.33.0" in allowed.stdout


def test_last_needs_two_runs(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        store.save_run(make_run("only", make_job(0, lognormal_ms(20))))
    proc = harness("compare", "--last", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert len(proc.stderr.strip().splitlines()) == 1 and "two stored runs" in proc.stderr
