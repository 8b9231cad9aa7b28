"""``darkflow demo --quick``: the whole chain end to end, and a second run that reuses everything."""

from __future__ import annotations

import json

import pytest

from darkflow.cli import main
from darkflow.demo import CALIBRATION, RUNS, SIGNALS, SM_SAMPLES, TEST, DemoOptions, demo


@pytest.mark.slow
def test_demo_quick_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    table = demo(DemoOptions(out=out, quick=True, workers=2))
    assert table == out / "COMPARISON.md"
    text = table.read_text()
    # the four SM samples, each with N and N_eff, and a plain statement on what is resolved
    assert "## Samples and their roles" in text and "| calibration | sm_calibration |" in text
    assert "| test | sm_test |" in text and "| training | sm |" in text and "| validation | sm |" in text
    assert "**eps_B = 0.001 is not resolved here**" in text and "(quick mode)" in text
    metrics = json.loads((out / "runs" / "default" / "scan" / "metrics.json").read_text())
    assert metrics["roles"]["calibration"]["label"] == CALIBRATION and metrics["roles"]["test"]["label"] == TEST
    assert metrics["roles"]["warnings"] == []
    n_eff = metrics["roles"]["calibration"]["n_eff"]
    assert f"N_eff = {n_eff:,.0f}" in text
    # one table per signal: every model with AUC +- error and eps_S with an interval, then the cuts
    for signal in SIGNALS:
        section = text.split(f"### {signal}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
        names = [row.split("|")[1].strip().strip("*") for row in rows]
        assert names[: len(RUNS)] == list(RUNS)
        assert all(" ± " in row for row in rows[: len(RUNS)])
        assert any(name.startswith("`hlf:MET`") for name in names)
        assert "[" in section and "not resolved" in section  # 1e-2 resolved with its interval, 1e-3 not
    for name in RUNS:
        run = out / "runs" / name
        assert (run / "model.pt").is_file()
        report = run / "report" / "REPORT.md"
        assert report.is_file() and f"runs/{name}/report/REPORT.md" in text
        assert "## Samples and their roles" in report.read_text()
        assert len(list((run / "report" / "REPORT_files").glob("*.png"))) >= 4
    for signal in SIGNALS:
        png = out / "comparison" / f"roc_models_{signal}_default.png"
        assert png.stat().st_size > 10_000 and f"(comparison/{png.name})" in text
    assert "darkflow flag --scores" in text
    generated = {p.relative_to(out): p.stat().st_mtime_ns for p in (out / "generated").rglob("*.root")}
    assert len(generated) == len(SM_SAMPLES) * 8 + len(SIGNALS)
    mtimes = {name: (out / "runs" / name / "model.pt").stat().st_mtime_ns for name in RUNS}
    printed = capsys.readouterr().out
    assert "1/6 generate" in printed and "6/6 comparison" in printed

    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "COMPARISON.md" in printed and printed.count("reused") >= len(RUNS) + len(SM_SAMPLES)
    assert {name: (out / "runs" / name / "model.pt").stat().st_mtime_ns for name in RUNS} == mtimes
    assert {p.relative_to(out): p.stat().st_mtime_ns for p in (out / "generated").rglob("*.root")} == generated
