"""The scores-file reader says what is wrong in one line; ``scan`` and ``report`` write all or nothing: a failed
or interrupted command leaves no new output and an existing one unchanged (real SIGTERM, in-process and as a
subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import signal_when_ready

from darkflow.analysis import plots
from darkflow.analysis.scan import FILES, ScanConfig, scan
from darkflow.analysis.thresholds import read_scores
from darkflow.cli import main
from darkflow.errors import InputError
from darkflow.fileio import leftovers

GROUPS = {"sm_cal": (3000, 0.0), "sm_test": (3000, 0.0), "zprime": (500, 2.0)}


def write_scores(path: Path, groups: dict[str, tuple[int, float]] = GROUPS, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as handle:
        handle.attrs["default_score"] = "total"
        for label, (n, shift) in groups.items():
            g = handle.create_group(label)
            g["total"] = rng.normal(shift, 1.0, n)
            g["weight"] = rng.uniform(0.5, 1.5, n)
            g["event_id"] = np.arange(n)
            g["process"] = np.zeros(n, np.int16)
            g.attrs["process_names"] = json.dumps([label])
            g.attrs["source"] = f"{label}.h5"
    return path


def tree(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (and the folder itself) with its content hash."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder.parent)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted([folder, *folder.rglob("*")])}


@pytest.fixture
def scores(tmp_path) -> Path:
    return write_scores(tmp_path / "scores.h5")


# ----------------------------------------------------------------------------- the scores-file reader


def damage(path: Path, how: str) -> str:
    """Damage the scores file ``path`` one way; returns the fragment the error must contain."""
    if how == "text":
        path.write_text("total,weight\n1,2\n")
        return "not an HDF5 file"
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        return "truncated or damaged"
    if how == "folder":
        path.unlink()
        path.mkdir()
        return "is a folder; expected a file"
    if how == "fifo":
        path.unlink()
        os.mkfifo(path)
        return "not a regular file"
    if how == "missing":
        path.unlink()
        return "scores file not found"
    with h5py.File(path, "a") as handle:
        g = handle["zprime"]
        if how == "no_weight":
            del g["weight"]
            return "group 'zprime' has no dataset weight"
        if how == "nan_weight":
            g["weight"][[3, 7]] = np.nan
            return "group 'zprime' has NaN or infinite weights: 2 of 500 (first at index 3)"
        if how == "inf_weight":
            g["weight"][11] = np.inf
            return "group 'zprime' has NaN or infinite weights: 1 of 500 (first at index 11)"
        if how == "weight_2d":
            del g["weight"]
            g["weight"] = np.ones((500, 2))
            return "weight is (500, 2), expected a dataset of shape (N,)"
        if how == "weight_text":
            del g["weight"]
            g["weight"] = np.array([b"a"] * 500)
            return "weight holds |S1, expected numbers"
        if how == "short_event_id":
            del g["event_id"]
            g["event_id"] = np.arange(10)
            return "event_id is (10,), expected a dataset of shape (500,)"
        if how == "nan_score":
            g["total"][42] = np.nan
            return "group 'zprime' has NaN or infinite 'total' scores: 1 of 500 (first at index 42)"
        if how == "bad_process_names":
            g.attrs["process_names"] = "[not json"
            return "process_names is not a JSON list"
    raise AssertionError(how)


DAMAGES = ["text", "truncated", "folder", "fifo", "missing", "no_weight", "nan_weight", "inf_weight", "weight_2d",
           "weight_text", "short_event_id", "nan_score", "bad_process_names"]


@pytest.mark.parametrize("how", DAMAGES)
def test_reader_says_what_is_wrong(scores, how):
    expected = damage(scores, how)
    with pytest.raises(InputError) as info:
        read_scores(scores)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("how", ["no_weight", "nan_weight", "fifo", "text"])
def test_scan_of_a_damaged_file_is_one_line_and_leaves_nothing(scores, tmp_path, capsys, how):
    expected = damage(scores, how)
    out = tmp_path / "scan"
    assert main(["scan", "--scores", str(scores), "--background", "sm_test", "--calibration", "sm_cal",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "no signal groups" not in err
    assert not out.exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- scan: all or nothing


def scan_argv(scores: Path, out: Path, *extra: str) -> list[str]:
    return ["scan", "--scores", str(scores), "--background", "sm_test", "--calibration", "sm_cal", "--out",
            str(out), *extra]


def test_scan_into_an_existing_folder_keeps_other_files(scores, tmp_path):
    out = tmp_path / "scan"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    (out / "metrics.csv").write_text("an earlier scan\n")
    assert main(scan_argv(scores, out)) == 0
    drawn = [f"{stem}_total.{ext}" for stem in ("roc", "scan", "si") for ext in ("png", "pdf")]
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, *drawn, "notes.txt"])
    assert (out / "notes.txt").read_text() == "kept"
    assert (out / "metrics.csv").read_text().startswith("signal,score,auc")
    assert leftovers(out) == [] and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["late_error", "metrics_csv_is_a_folder", "out_is_scores", "out_is_a_file"])
def test_a_failed_scan_changes_nothing(scores, tmp_path, capsys, case):
    out = tmp_path / "scan"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    extra, expect = ["--eps-b", "1e-4"], "below 10/N_eff"  # refused after the file was read
    if case == "metrics_csv_is_a_folder":
        (out / "metrics.csv").mkdir()
        extra, expect = [], "is a folder; give a file name"
    elif case == "out_is_scores":
        out, extra, expect = scores, [], "is also an input"
    elif case == "out_is_a_file":
        out = tmp_path / "file"
        out.write_text("x")
        extra, expect = [], "exists and is not a folder"
    before = {**tree(tmp_path / "scan"), **tree(out), "scores": hashlib.sha256(scores.read_bytes()).hexdigest()}
    assert main(scan_argv(scores, out, *extra)) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1
    after = {**tree(tmp_path / "scan"), **tree(out), "scores": hashlib.sha256(scores.read_bytes()).hexdigest()}
    assert after == before and leftovers(tmp_path) == [] and leftovers(tmp_path / "scan") == []


def test_sigterm_during_scan_leaves_the_folder_unchanged(tmp_path):
    big = write_scores(tmp_path / "big.h5", {"sm_cal": (200_000, 0.0), "sm_test": (200_000, 0.0),
                                            "zprime": (100_000, 1.0), "monojet": (100_000, 0.5)})
    out = tmp_path / "scan"
    out.mkdir()
    (out / "metrics.csv").write_text("an earlier scan\n")
    before = tree(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "darkflow", *scan_argv(big, out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err = signal_when_ready(proc, signal.SIGTERM, lambda: bool(leftovers(tmp_path)))
    assert proc.returncode == 143, err
    assert err.count("\n") == 1 and "interrupted by SIGTERM" in err
    assert tree(out) == before and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- report: all or nothing


@pytest.fixture
def report_inputs(scores, tmp_path) -> dict[str, Path]:
    scan(ScanConfig(scores=scores, background="sm_test", calibration="sm_cal", out=tmp_path / "scan"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: sm.h5\nmodel:\n  kind: vae\n  latent: 4\n")
    (run / "metrics.csv").write_text("epoch,seconds,train_loss,val_loss\n0,0.1,3.0,2.8\n1,0.2,2.5,2.4\n")
    return {"run": run, "scan": tmp_path / "scan", "scores": scores}


def report_argv(inputs: dict[str, Path], out: Path) -> list[str]:
    return ["report", "--run", str(inputs["run"]), "--scan", str(inputs["scan"]), "--scores", str(inputs["scores"]),
            "--out", str(out)]


def report_outputs(out: Path) -> dict[str, str]:
    return {**tree(out), **tree(out.with_suffix(".html")), **tree(out.with_name(f"{out.stem}_files"))}


@pytest.mark.parametrize("existing", [False, True])
def test_sigterm_during_report_leaves_nothing_new(report_inputs, tmp_path, capsys, monkeypatch, existing):
    out = tmp_path / "R.md"
    if existing:
        out.write_text("an earlier report\n")
        out.with_suffix(".html").write_text("<p>earlier</p>\n")
        (tmp_path / "R_files").mkdir()
        (tmp_path / "R_files" / "roc_total.png").write_bytes(b"earlier")
    before = report_outputs(out)
    drawn = []

    def interrupt(fig, ax):  # a real SIGTERM once the third figure is complete (the handler raises in here)
        drawn.append(fig)
        if len(drawn) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(plots._Figure, "hook", interrupt)
    assert main(report_argv(report_inputs, out)) == 143
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted by SIGTERM" in err and len(drawn) == 3
    assert report_outputs(out) == before and leftovers(tmp_path) == []


def test_failed_report_changes_nothing_and_success_replaces_all(report_inputs, tmp_path, capsys):
    out = tmp_path / "R.md"
    out.write_text("an earlier report\n")
    (tmp_path / "R_files").mkdir()
    (tmp_path / "R_files" / "old.png").write_bytes(b"earlier")
    before = report_outputs(out)
    (report_inputs["scan"] / "metrics.json").write_text("{not json")
    assert main(report_argv(report_inputs, out)) == 2
    err = capsys.readouterr().err
    assert "metrics.json: not JSON" in err and err.count("\n") == 1
    assert report_outputs(out) == before and leftovers(tmp_path) == []
    scan(ScanConfig(scores=report_inputs["scores"], background="sm_test", calibration="sm_cal",
                     out=report_inputs["scan"]))
    assert main(report_argv(report_inputs, out)) == 0
    assert out.read_text().startswith("# DarkFlow report") and out.with_suffix(".html").is_file()
    assert not (tmp_path / "R_files" / "old.png").exists() and (tmp_path / "R_files" / "roc_total.png").is_file()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["files_is_the_scan", "missing_parent", "scores_is_a_fifo"])
def test_report_refuses_before_any_work(report_inputs, tmp_path, capsys, case):
    out = tmp_path / "R.md"
    if case == "files_is_the_scan":  # the report's image folder x_files would replace the scan folder
        out, expect = tmp_path / "x.md", "is also an input"
        report_inputs["scan"] = report_inputs["scan"].rename(tmp_path / "x_files")
    elif case == "missing_parent":
        out, expect = tmp_path / "nowhere" / "R.md", "does not exist"
    else:
        report_inputs["scores"].unlink()
        os.mkfifo(report_inputs["scores"])
        expect = "not a regular file"
    before = {**tree(tmp_path)}
    assert main(report_argv(report_inputs, out)) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1
    assert tree(tmp_path) == before


@pytest.mark.parametrize("case", ["scan_csv_binary", "scan_csv_columns", "metrics_csv_columns", "metrics_json_list",
                                  "run_metrics_binary"])
def test_report_of_damaged_inputs_is_one_line(report_inputs, tmp_path, capsys, case):
    scan_dir, run = report_inputs["scan"], report_inputs["run"]
    target, content, expect = {
        "scan_csv_binary": (scan_dir / "scan.csv", b"\xff\xfe\x00garbage\n", "not a CSV file"),
        "scan_csv_columns": (scan_dir / "scan.csv", b"a,b\n1,2\n", "no column signal, score, threshold"),
        "metrics_csv_columns": (scan_dir / "metrics.csv", b"x,y\n1,2\n", "no column signal, score"),
        "metrics_json_list": (scan_dir / "metrics.json", b"[1, 2]", "no 'background'"),
        "run_metrics_binary": (run / "metrics.csv", b"\xff\xfe\x00\x01\n", "not a CSV file"),
    }[case]
    target.write_bytes(content)
    out = tmp_path / "R.md"
    assert main(report_argv(report_inputs, out)) == 2
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1 and "internal error" not in err
    assert report_outputs(out) == {} and leftovers(tmp_path) == []
