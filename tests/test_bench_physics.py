"""``benchmarks/bench_physics.py --quick`` end to end, its resume, and ``make_results.py`` on its output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_physics  # noqa: E402
import make_results  # noqa: E402


@pytest.mark.slow
def test_quick_physics_benchmark_resumes_and_builds_results(tmp_path, capsys):
    work = tmp_path / "work"
    assert bench_physics.main(["--quick", "--work", str(work), "--seeds", "2", "--jobs", "2", "--no-progress"]) == 0
    first = capsys.readouterr().out
    summary = json.loads((work / "summary.json").read_text())
    recorded = json.loads((work / "results" / "bench_physics.json").read_text())
    assert recorded["rows"] == summary["rows"] and recorded["machine"]["cores"] >= 1
    models, signals = list(bench_physics.QUICK_MODELS), list(bench_physics.QUICK.signal_events)
    assert summary["models"] == models and summary["signals"] == signals and len(signals) >= 4
    facts = summary["facts"]
    assert set(facts["processes"]) >= {"qcd", "ttbar", "wjets", "zjets_nunu"}
    assert facts["files"]["sm_train"]["events"] == bench_physics.QUICK.train_events
    assert facts["files"]["sm_all"]["events"] == (facts["files"]["sm_train"]["events"]
                                                 + facts["files"]["sm_calibration"]["events"]
                                                 + facts["files"]["sm_test"]["events"])
    assert facts["files"]["sm_all"]["events"] < facts["sm_read"]  # the channel removed events
    rows = {(r["model"], r["signal"], r["metric"]): r for r in summary["rows"]}
    cuts = summary["cuts"]
    assert "hlf:MET" in cuts and "hlf:m_eff" in cuts and "hlf:MET_phi" not in cuts
    assert len(rows) == (len(models) + len(cuts)) * len(signals) * len(bench_physics.METRICS)
    # the cut baselines need no training: one value each, with its statistical uncertainty
    met = rows[("hlf:MET", signals[0], "auc")]
    assert met["n_seeds"] == 1 and met["stat"] > 0
    for model in models:
        for signal in signals:
            auc = rows[(model, signal, "auc")]
            assert auc["n_seeds"] == 2 and len(auc["per_seed"]) == 2
            assert 0.0 <= auc["value"] <= 1.0 and auc["std"] >= 0.0
            mean = sum(auc["per_seed"]) / 2
            assert auc["value"] == pytest.approx(mean)
    # the two seeds are different trainings of the same data: the per-seed AUCs differ for a trained VAE
    assert any(len(set(rows[("conv_none", s, "auc")]["per_seed"])) == 2 for s in signals)
    assert "ETA" in first and "zprime_ttbar" in first

    stamps = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.suffix in (".pt", ".root", ".h5")
              or p.name == "result.json"}
    assert sum(p.name == "model.pt" for p in stamps) == len(models) * 2
    assert bench_physics.main(["--quick", "--work", str(work), "--seeds", "2", "--jobs", "1", "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert "10 of 10 (model, seed) units already done, reused" in second
    assert "train " not in second and second.count("exists, reused") == 8
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((work / "summary.json").read_text())["rows"] == summary["rows"]

    # an interrupted unit (no result.json yet) is redone, the others are not
    redo = work / "runs" / "density" / "s02"
    (redo / "result.json").unlink()
    (redo / "model.pt").unlink()
    assert bench_physics.main(["--quick", "--work", str(work), "--seeds", "2", "--jobs", "1", "--no-progress"]) == 0
    third = capsys.readouterr().out
    assert "train density seed 2" in third and third.count("train ") == 1
    assert (redo / "result.json").is_file()

    out = tmp_path / "RESULTS.md"
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{make_results.BEGIN}\nold\n{make_results.END}\nrest\n")
    assert make_results.main(["--results", str(work / "results"), "--out", str(out), "--readme", str(readme)]) == 0
    text = out.read_text()
    assert "partial run" in text and "### AUC" in text and "eps_S at eps_B = 1e-3" in text
    for model in models:
        assert f"| {model} |" in text
    assert "conv + planar** vs conv without flow" in text
    assert "| bench_flows | not run yet |" in text
    table_line = next(line for line in text.splitlines() if line.startswith("| conv_none | ") and "±" in line)
    auc = rows[("conv_none", signals[0], "auc")]
    assert f"{auc['value']:.3f} ± {auc['std']:.3f}" in table_line
    new_readme = readme.read_text()
    assert "old" not in new_readme and "| conv_none |" in new_readme and new_readme.endswith("rest\n")


def test_make_results_without_results_says_not_run_yet(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert make_results.main(["--results", str(tmp_path / "none"), "--out", str(out), "--readme", "none"]) == 0
    text = out.read_text()
    assert "Not run yet: `make bench-physics`" in text
    for script in make_results.COMPUTE_SCRIPTS:
        assert f"| {script} | not run yet |" in text


def test_make_results_compute_table_marks_targets(tmp_path):
    sys.path.insert(0, str(BENCH))
    from _record import record

    rows = [{"name": "ratio", "value": 2.31, "unit": "", "reference": None, "target": "<= 1.50", "ok": False},
            {"name": "rate", "value": 531672.4, "unit": "events/s", "reference": None, "target": None, "ok": None},
            {"name": "memory", "value": 1.05, "unit": "", "reference": "1x", "target": "<= 1.30", "ok": True}]
    record("bench_prepare", rows, results=tmp_path / "results")
    out = tmp_path / "RESULTS.md"
    make_results.main(["--results", str(tmp_path / "results"), "--out", str(out), "--readme", "none"])
    text = out.read_text()
    assert "| bench_prepare | ratio | 2.31 |  |  | <= 1.50 | MISSED |" in text
    assert "| bench_prepare | rate | 531,672 | events/s |  |  |  |" in text
    assert "| bench_prepare | memory | 1.05 |  | 1x | <= 1.30 | OK |" in text
    assert "| bench_generate | not run yet |" in text
