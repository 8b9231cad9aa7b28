"""``benchmarks/bench_darkmachines.py --quick`` end to end, its resume, its RESULTS.md section, and the default recipe."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _darkmachines_report  # noqa: E402
import bench_darkmachines as bench  # noqa: E402
import make_results  # noqa: E402


def test_the_benchmark_default_is_the_shipped_default():
    """The entry RESULTS.md calls the default recipe is what ``darkflow train`` trains with no model option."""
    from darkflow.train.run import load_train_config

    config, overrides = bench.MODELS[bench.DEFAULT_MODEL]
    shipped = load_train_config(config, {})
    benchmarked = load_train_config(config, overrides)
    assert benchmarked.model == shipped.model and benchmarked.standardize == shipped.standardize
    assert benchmarked.training.kl_warmup == shipped.training.kl_warmup
    assert benchmarked.training.flow_warmup == shipped.training.flow_warmup
    assert config == "convvae"


def test_every_benchmark_model_config_is_valid():
    sizes = bench.FULL
    for name in bench.MODELS:
        config = bench.train_config(name, 1, sizes, 20000)
        assert config.training.seed == 1


def test_aggregate_medians_and_cuts_against_a_hand_computation():
    signals = ["a", "b", "c"]
    runs = [{"model": "m", "scores": {"total": {s: {"auc": auc, "eps_s@1e-3": eps} for s, auc, eps in
                                                 zip(signals, aucs, epss, strict=True)}}}
            for aucs, epss in (([0.9, 0.6, 0.8], [0.1, 0.5, 0.3]), ([0.7, 0.8, 0.6], [0.2, 0.4, None]))]
    cuts = {"hlf:MET": {s: {"auc": v, "eps_s@1e-3": v / 2} for s, v in zip(signals, (0.99, 0.5, 0.7), strict=True)},
            "hlf:HT": {s: {"auc": v, "eps_s@1e-3": v / 2} for s, v in zip(signals, (0.6, 0.9, 0.75), strict=True)}}
    rows = bench.aggregate("chan3", runs, cuts, signals)
    by = {(r["entry"], r["signal"], r["metric"]): r for r in rows}
    # per signal: the mean over seeds; the median over signals of those means
    assert by[("m:total", "a", "auc")]["value"] == pytest.approx(0.8)
    assert by[("m:total", "median", "auc")]["value"] == pytest.approx(statistics.median([0.8, 0.7, 0.7]))
    assert by[("m:total", "mean", "auc")]["value"] == pytest.approx((0.8 + 0.7 + 0.7) / 3)
    # the seed spread of the median: seed 1 median 0.8, seed 2 median 0.7
    assert by[("m:total", "median", "auc")]["std"] == pytest.approx(statistics.stdev([0.8, 0.7]))
    # signal c has one resolved seed only: its mean is that seed's value
    assert by[("m:total", "c", "eps_s@1e-3")]["value"] == pytest.approx(0.3)
    table = bench.summary_table(rows, "chan3")
    # medians: MET 0.35, HT 0.375 -> HT is the best fixed cut; the oracle takes MET for a, HT for b and c
    assert table["best_fixed_cut"] == "hlf:HT"
    assert {s: o["cut"] for s, o in table["oracle"].items()} == {"a": "hlf:MET", "b": "hlf:HT", "c": "hlf:HT"}
    assert table["oracle_median"]["eps_s@1e-3"] == pytest.approx(statistics.median([0.495, 0.45, 0.375]))


@pytest.mark.slow
def test_quick_darkmachines_benchmark_resumes_and_builds_results(tmp_path, capsys):
    work = tmp_path / "work"
    assert bench.main(["--quick", "--work", str(work), "--seeds", "2", "--jobs", "2", "--no-progress"]) == 0
    first = capsys.readouterr().out
    summary = json.loads((work / "summary.json").read_text())
    assert "chan3: skipped" in first  # the quick SM is too small for chan3: said, not a crash
    assert summary["tables"].keys() == {"meff200"}
    facts = summary["facts"]["meff200"]
    files = facts["files"]
    assert files["sm_all"]["events"] == (files["sm_train"]["events"] + files["sm_calibration"]["events"]
                                         + files["sm_test"]["events"])
    rows = {(r["entry"], r["signal"], r["metric"]): r for r in summary["rows"]}
    for model in bench.QUICK_MODELS:
        auc = rows[(f"{model}:total", facts["signals"][0], "auc")]
        assert auc["n_seeds"] == 2 and 0.0 <= auc["value"] <= 1.0
    # a VAE writes all its scores, each scanned; the cuts have one value each
    for score in bench.VAE_SCORES:
        assert (f"conv_planar:{score}", "median", "auc") in rows
    assert rows[("hlf:MET", "median", "auc")]["std"] is None
    assert summary["default"] == f"{bench.DEFAULT_MODEL}:{bench.DEFAULT_SCORE}"
    text = "\n".join(_darkmachines_report.section(json.loads((work / "results" / "bench_darkmachines.json")
                                                             .read_text()), make_results.machine_line))
    assert "best fixed cut" in text and "oracle cut" in text and "default recipe" in text
    assert "chan3 | skipped" in text  # the data table says why chan3 has no table

    stamps = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.suffix in (".pt", ".root", ".h5")
              or p.name == "result.json"}
    assert bench.main(["--quick", "--work", str(work), "--seeds", "2", "--jobs", "1", "--no-progress"]) == 0
    second = capsys.readouterr().out
    assert "already done, reused" in second and "generate " not in second
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
