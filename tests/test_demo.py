"""``darkflow demo --quick``: the whole chain end to end, and a second run that reuses everything."""

from __future__ import annotations

import time

import pytest

from darkflow.cli import main
from darkflow.demo import RUNS, SIGNALS, DemoOptions, demo


@pytest.mark.slow
def test_demo_quick_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    start = time.perf_counter()
    table = demo(DemoOptions(out=out, quick=True, workers=2))
    first = time.perf_counter() - start
    assert table == out / "COMPARISON.md"
    text = table.read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header, rows = lines[0], lines[1:]
    for signal in SIGNALS:
        assert signal in header
    assert [row.split("|")[1].strip() for row in rows] == list(RUNS)
    for row in rows:
        assert row.count("/") >= len(SIGNALS)  # every cell: AUC / eps_S
    mtimes = {}
    for name in RUNS:
        run = out / "runs" / name
        assert (run / "model.pt").is_file()
        report = run / "report" / "REPORT.md"
        assert report.is_file() and f"runs/{name}/report/REPORT.md" in text
        assert len(list((run / "report" / "REPORT_files").glob("*.png"))) >= 4
        mtimes[name] = (run / "model.pt").stat().st_mtime_ns
    for signal in SIGNALS:
        png = out / "comparison" / f"roc_models_{signal}_total.png"
        assert png.stat().st_size > 10_000 and f"(comparison/{png.name})" in text
    generated = {p.name: p.stat().st_mtime_ns for p in (out / "generated").glob("*.root")}
    printed = capsys.readouterr().out
    assert "1/5 generate" in printed and "5/5 comparison" in printed

    start = time.perf_counter()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    second = time.perf_counter() - start
    printed = capsys.readouterr().out
    assert "COMPARISON.md" in printed and "reused" in printed
    assert {name: (out / "runs" / name / "model.pt").stat().st_mtime_ns for name in RUNS} == mtimes
    assert {p.name: p.stat().st_mtime_ns for p in (out / "generated").glob("*.root")} == generated
    assert second < first
