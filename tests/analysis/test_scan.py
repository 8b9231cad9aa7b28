"""``darkflow scan`` and ``darkflow flag`` end to end on a small scores file written here."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from darkflow.analysis.metrics import threshold_at_efficiency, weighted_auc
from darkflow.analysis.scan import FILES
from darkflow.cli import main

N_TRAIN, N_VAL, N_SIG, N_CAL, N_TEST = 1500, 2000, 400, 3000, 2500


def _group(handle: h5py.File, label: str, total: np.ndarray, split: np.ndarray, weight, process: int) -> None:
    group = handle.create_group(label)
    group.create_dataset("total", data=total)
    group.create_dataset("reco", data=0.5 * total)
    group.create_dataset("weight", data=np.broadcast_to(np.asarray(weight, dtype=np.float64), total.shape))
    group.create_dataset("event_id", data=np.arange(total.size, dtype=np.int64) + 100)
    group.create_dataset("process", data=np.full(total.size, process, dtype=np.int16))
    group.create_dataset("split", data=split.astype(np.int8))
    group.attrs["process_names"] = json.dumps(["ttbar", "wjets", "zprime"])
    group.attrs["source"] = f"{label}.h5"


@pytest.fixture
def scores_file(tmp_path):
    """The four SM samples (training file with training and validation events, calibration, test) and a signal."""
    rng = np.random.default_rng(11)
    path = tmp_path / "scores.h5"
    # training events score far lower than the others: a threshold or AUC using them would be visibly wrong
    sm = np.r_[rng.normal(-5, 1, N_TRAIN), rng.normal(0, 1, N_VAL)]
    split = np.r_[np.zeros(N_TRAIN), np.ones(N_VAL)]
    with h5py.File(path, "w") as handle:
        handle.attrs["default_score"] = "total"
        _group(handle, "sm", sm, split, 0.01, 0)
        _group(handle, "sm_cal", rng.normal(0.3, 1, N_CAL), np.full(N_CAL, -1), rng.uniform(0.01, 0.03, N_CAL), 1)
        _group(handle, "sm_test", rng.normal(0.3, 1, N_TEST), np.full(N_TEST, -1), 0.02, 1)
        _group(handle, "zprime", rng.normal(2.5, 1, N_SIG), np.full(N_SIG, -1), 0.001, 2)
    return path, sm, split


def _csv(path):
    """The rows of a CSV, its ``#`` header lines skipped (as pandas ``read_csv(comment="#")``)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def _read(path, label):
    with h5py.File(path) as handle:
        return handle[f"{label}/total"][:], handle[f"{label}/weight"][:]


def test_scan_four_samples(scores_file, tmp_path, capsys):
    path, sm, split = scores_file
    out = tmp_path / "scan"
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--calibration", "sm_cal",
                 "--out", str(out), "--lumi", "10"]) == 0
    for name in ("thresholds.json", "metrics.csv", "metrics.json", "scan.csv"):
        assert (out / name).is_file()
    assert not list(out.glob(".*tmp"))
    cal, w_cal = _read(path, "sm_cal")
    test, w_test = _read(path, "sm_test")
    sig, w_sig = _read(path, "zprime")
    n_eff_cal = w_cal.sum() ** 2 / (w_cal**2).sum()

    record = json.loads((out / "thresholds.json").read_text())
    assert record["calibration"]["label"] == "sm_cal" and record["calibration"]["n"] == N_CAL
    assert record["calibration"]["n_eff"] == pytest.approx(n_eff_cal)
    expected = threshold_at_efficiency(cal, w_cal, 1e-2)
    got = record["scores"]["total"]
    assert got[0]["threshold"] == pytest.approx(expected.value) and got[0]["resolved"]
    # 1e-3 needs 10/N_eff ~ 3.5e-3: not resolved with ~2,800 effective calibration events
    assert got[1]["eps_b"] == 1e-3 and got[1]["threshold"] is None and not got[1]["resolved"]
    above = cal > expected.value
    assert got[0]["n_eff_above"] == pytest.approx(w_cal[above].sum() ** 2 / (w_cal[above] ** 2).sum())

    metrics = json.loads((out / "metrics.json").read_text())
    roles = metrics["roles"]
    assert roles["training"]["n"] == N_TRAIN and roles["validation"]["n"] == N_VAL
    assert roles["calibration"]["label"] == "sm_cal" and roles["test"]["label"] == "sm_test"
    assert list(roles["signals"]) == ["zprime"] and roles["warnings"] == []

    rows = _csv(out / "metrics.csv")
    assert {(r["signal"], r["score"]) for r in rows} == {("zprime", "total"), ("zprime", "reco")}
    row = next(r for r in rows if r["score"] == "total")
    assert row["eps_s@1e-3"] == "not resolved" and row["thr@1e-3"] == "not resolved"
    eps_s = w_sig[sig > expected.value].sum() / w_sig.sum()
    assert float(row["eps_s@1e-2"]) == pytest.approx(eps_s)
    assert float(row["eps_s_lo@1e-2"]) < eps_s < float(row["eps_s_hi@1e-2"])
    # the test sample's efficiency above the calibration threshold (closure), with its interval
    eps_test = w_test[test > expected.value].sum() / w_test.sum()
    assert float(row["eps_b_test@1e-2"]) == pytest.approx(eps_test)
    assert float(row["eps_b_test_lo@1e-2"]) < eps_test < float(row["eps_b_test_hi@1e-2"])
    # AUC against the test sample, with a bootstrap error of the size DeLong's formula gives
    assert float(row["auc"]) == pytest.approx(weighted_auc(test, sig, w_test, w_sig))
    assert 0.3 * _delong_sigma(test, sig) < float(row["auc_err"]) < 3 * _delong_sigma(test, sig)
    assert float(row["n_eff_test"]) == pytest.approx(N_TEST) and float(row["n_eff_signal"]) == pytest.approx(N_SIG)
    assert row["note"] == ""

    scan_rows = _csv(out / "scan.csv")
    assert scan_rows and {"threshold", "resolved", "eps_s", "eps_b", "n_eff_b_above", "si", "n_background",
                          "n_signal"} <= set(scan_rows[0])
    first = next(r for r in scan_rows if r["score"] == "total")
    thr = float(first["threshold"])
    assert float(first["n_signal"]) == pytest.approx(w_sig[sig > thr].sum() * 10 * 1000)
    assert float(first["n_background"]) == pytest.approx(
        w_cal[cal > thr].sum() / w_cal.sum() * w_test.sum() * 10 * 1000)
    # si_max: the best SI among resolved thresholds (>= 10 effective calibration events above them)
    total_rows = [r for r in scan_rows if r["score"] == "total"]
    for r in total_rows:
        assert (r["resolved"] == "yes") == (float(r["eps_b"]) * n_eff_cal >= 10 - 1e-9)
    eligible = [float(r["si"]) for r in total_rows if r["resolved"] == "yes"]
    assert max(eligible) == pytest.approx(float(row["si_max"]))
    assert any(r["resolved"] == "no" for r in total_rows)
    shown = capsys.readouterr().out
    assert "calibration  sm_cal" in shown and "test         sm_test" in shown and "training     sm" in shown


def _delong_sigma(background: np.ndarray, signal: np.ndarray) -> float:
    """DeLong's standard error of the unweighted AUC (an independent formula)."""
    from scipy.stats import rankdata

    m, n = signal.size, background.size
    ranks = rankdata(np.r_[signal, background])
    v10 = (ranks[:m] - rankdata(signal)) / n
    v01 = 1 - (ranks[m:] - rankdata(background)) / m
    return float(np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n))


def test_scan_default_calibration_is_the_validation_split_with_a_warning(scores_file, tmp_path, capsys):
    path, sm, split = scores_file
    out = tmp_path / "scan"
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--out", str(out), "--score", "total",
                 "--eps-b", "1e-2", "--signals", "zprime"]) == 0
    record = json.loads((out / "thresholds.json").read_text())
    assert record["calibration"]["label"] == "sm" and record["calibration"]["selection"].startswith("split == 1")
    assert record["calibration"]["n"] == N_VAL
    assert record["scores"]["total"][0]["threshold"] == pytest.approx(
        threshold_at_efficiency(sm[split == 1], None, 1e-2).value)
    err = capsys.readouterr().err
    assert "warning: thresholds are set on the validation events of 'sm'" in err
    assert json.loads((out / "metrics.json").read_text())["roles"]["warnings"]
    assert [r["signal"] for r in _csv(out / "metrics.csv")] == ["zprime"]


def test_scan_marks_an_inverted_score(scores_file, tmp_path):
    path, _, _ = scores_file
    with h5py.File(path, "a") as handle:
        handle["zprime/total"][...] = -handle["zprime/total"][...] - 3
    out = tmp_path / "scan"
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--calibration", "sm_cal",
                 "--out", str(out), "--score", "total"]) == 0
    row = _csv(out / "metrics.csv")[0]
    assert float(row["auc"]) < 0.5 and row["note"].startswith("inverted")


@pytest.mark.parametrize(("extra", "message"), [
    (["--background", "nope"], "no background label 'nope'; labels in the file: sm, sm_cal, sm_test, zprime"),
    (["--background", "sm_test", "--score", "kl"], "no score 'kl' in every group; valid scores: reco, total"),
    (["--background", "sm_test", "--calibration", "sm_cal", "--eps-b", "1e-3"], "below 10/N_eff"),
    (["--background", "sm"], "no events left once the training and calibration events are removed"),
    (["--background", "sm_test", "--calibration", "sm_test"], "is also the --background"),
    (["--background", "sm_test", "--eps-b", "abc"], "not a number"),
])
def test_scan_errors(scores_file, tmp_path, capsys, extra, message):
    path, _, _ = scores_file
    out = tmp_path / "scan"
    assert main(["scan", "--scores", str(path), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (out / "metrics.csv").exists()


def test_scan_refuses_calibration_and_test_from_one_file(scores_file, tmp_path, capsys):
    path, _, _ = scores_file
    with h5py.File(path, "a") as handle:
        handle["sm_cal"].attrs["source"] = "sm_test.h5"
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--calibration", "sm_cal",
                 "--out", str(tmp_path / "scan")]) == 2
    assert "come from the same event file" in capsys.readouterr().err


def test_flag_by_threshold_and_by_eps(scores_file, tmp_path, capsys):
    path, sm, split = scores_file
    out = tmp_path / "cands.csv"
    assert main(["flag", "--scores", str(path), "--label", "zprime", "--threshold", "3", "--out", str(out)]) == 0
    sig, _ = _read(path, "zprime")
    rows = _csv(out)
    assert len(rows) == np.sum(sig > 3) and f"flagged {len(rows)} of {N_SIG}" in capsys.readouterr().out
    assert list(rows[0]) == ["event_id", "process", "total", "reco", "weight"]
    assert {r["process"] for r in rows} == {"zprime"}
    assert [float(r["total"]) for r in rows] == sorted((float(r["total"]) for r in rows), reverse=True)
    assert not list(tmp_path.glob(".*tmp"))

    assert main(["flag", "--scores", str(path), "--label", "zprime", "--eps-b", "1e-2", "--calibration", "sm_cal",
                 "--out", str(out)]) == 0
    cal, w_cal = _read(path, "sm_cal")
    thr = threshold_at_efficiency(cal, w_cal, 1e-2).value
    assert len(_csv(out)) == np.sum(sig > thr)
    shown = capsys.readouterr()
    assert "calibration sample 'sm_cal' (all, N = 3000" in shown.out and "effective events above" in shown.out
    assert "warning" not in shown.err

    assert main(["flag", "--scores", str(path), "--label", "zprime", "--eps-b", "1e-2", "--out", str(out)]) == 0
    assert len(_csv(out)) == np.sum(sig > threshold_at_efficiency(sm[split == 1], None, 1e-2).value)
    shown = capsys.readouterr()
    assert "split == 1" in shown.out and "warning: thresholds are set on the validation events" in shown.err
    head = out.read_text().splitlines()[:2]
    assert ", eps_B=0.01, calibration=sm, run=unknown, score=total" in head[0]
    assert head[1].endswith("calibration_events=validation")


def test_flag_errors(scores_file, tmp_path, capsys):
    path, _, _ = scores_file
    out = tmp_path / "cands.csv"
    assert main(["flag", "--scores", str(path), "--label", "x", "--threshold", "1", "--out", str(out)]) == 2
    assert "no label 'x'" in capsys.readouterr().err
    assert main(["flag", "--scores", str(path), "--label", "sm_cal", "--eps-b", "1e-2", "--calibration", "sm_cal",
                 "--out", str(out)]) == 2
    assert "sample being flagged" in capsys.readouterr().err
    assert main(["flag", "--scores", str(path), "--label", "zprime", "--eps-b", "1e-3", "--calibration", "sm_cal",
                 "--out", str(out)]) == 2
    assert "below 10/N_eff" in capsys.readouterr().err
    assert not out.exists()


def test_scan_refuses_negative_weights(scores_file, tmp_path, capsys):
    path, _, _ = scores_file
    with h5py.File(path, "a") as handle:
        handle["zprime/weight"][0] = -1.0
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--out", str(tmp_path / "scan")]) == 2
    assert "group 'zprime' has negative" in capsys.readouterr().err


def test_flag_csv_has_header_lines_and_the_high_level_features(scores_file, tmp_path, capsys):
    path, _, _ = scores_file
    rng = np.random.default_rng(5)
    features = {}
    with h5py.File(path, "a") as handle:
        handle.attrs["model"] = "runs/conv_maf"
        for label in handle:
            n = handle[label]["weight"].shape[0]
            features[label] = {"n_jet": rng.integers(0, 6, n).astype(np.float64), "HT": rng.uniform(0, 900, n),
                               "MET": rng.uniform(0, 400, n), "m_eff": rng.uniform(0, 1200, n)}
            for name, values in features[label].items():
                handle[label].create_dataset(f"hlf:{name}", data=values)
    out = tmp_path / "cands.csv"
    assert main(["flag", "--scores", str(path), "--label", "zprime", "--eps-b", "1e-2", "--calibration", "sm_cal",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    lines = out.read_text().splitlines()
    cal, w_cal = _read(path, "sm_cal")
    placed = threshold_at_efficiency(cal, w_cal, 1e-2)
    assert lines[0] == (f"# threshold={placed.value!r}, eps_B=0.01, calibration=sm_cal, run=runs/conv_maf, "
                        "score=total")
    sig, _ = _read(path, "zprime")
    assert lines[1].startswith(f"# sample=zprime, events={N_SIG}, flagged={np.sum(sig > placed.value)}, "
                               f"eps_B_achieved={placed.achieved:.6g}, calibration_events=all")
    assert lines[2] == "event_id,process,total,reco,weight,MET,HT,m_eff,n_jet"
    rows = _csv(out)
    assert len(rows) == np.sum(sig > placed.value)
    for row in rows:
        i = int(row["event_id"]) - 100
        assert float(row["total"]) == sig[i] and float(row["MET"]) == features["zprime"]["MET"][i]
        assert float(row["n_jet"]) == features["zprime"]["n_jet"][i] and float(row["HT"]) == features["zprime"]["HT"][i]

    assert main(["flag", "--scores", str(path), "--label", "zprime", "--threshold", "2", "--score", "hlf:MET",
                 "--out", str(out)]) == 0
    assert out.read_text().splitlines()[:3] == [
        "# threshold=2.0, eps_B=none, calibration=none, run=runs/conv_maf, score=hlf:MET",
        f"# sample=zprime, events={N_SIG}, flagged={np.sum(features['zprime']['MET'] > 2)}, eps_B_achieved=none, "
        "calibration_events=none",
        "event_id,process,hlf:MET,reco,total,weight,MET,HT,m_eff,n_jet"]


def _check_png(path) -> None:
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 5000, path
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200 and float(pixels[..., :3].var()) > 1e-3, path


def test_scan_writes_the_roc_scan_and_si_plots(scores_file, tmp_path, capsys):
    path, _, _ = scores_file
    with h5py.File(path, "a") as handle:
        for label in handle:
            handle[label].create_dataset("hlf:MET", data=2.0 * handle[label]["total"][:] + 1.0)
    out = tmp_path / "scan"
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--calibration", "sm_cal", "--out",
                 str(out), "--eps-b", "1e-2", "--style", "CMS"]) == 0
    assert "plot file(s)" in capsys.readouterr().out
    for stem in ("roc", "scan", "si"):
        for score in ("total", "reco", "hlf_MET"):
            _check_png(out / f"{stem}_{score}.png")
            assert (out / f"{stem}_{score}.pdf").read_bytes()[:4] == b"%PDF"
    assert not list(out.glob("*:*")) and not list(tmp_path.glob(".*")), "colon in a file name or a leftover"
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--out", str(tmp_path / "s2"),
                 "--plot-options", str(tmp_path / "none.yaml")]) == 2
    assert "plot options file" in capsys.readouterr().err and not (tmp_path / "s2").exists()
    assert main(["scan", "--scores", str(path), "--background", "sm_test", "--calibration", "sm_cal", "--out",
                 str(tmp_path / "s3"), "--no-plots"]) == 0
    assert sorted(p.name for p in (tmp_path / "s3").iterdir()) == sorted(FILES)
