"""Every bad input ends in one line naming the problem and what is valid, a non-zero exit, and no output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.cli import main


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


def assert_clean_failure(code, err, out_dir, *fragments):
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    assert not list(out_dir.glob("*.h5")), "no output may be left behind"
    assert not list(out_dir.glob(".*tmp")), "no temporary file may be left behind"


@pytest.fixture()
def outdir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def good_root(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("src") / "good.root", random_nanoaod(np.random.default_rng(0), 50))


def test_missing_file(capsys, outdir):
    code, err = run(capsys, "prepare", "nope.root", "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "input file not found: nope.root")


def test_not_a_root_file(capsys, tmp_path, outdir):
    bad = tmp_path / "junk.root"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    code, err = run(capsys, "prepare", str(bad), "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "neither a ROOT file nor a Dark Machines CSV")
    code, err = run(capsys, "prepare", str(bad), "--source", "nanoaod", "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "not a ROOT file")


def test_truncated_root_file(capsys, tmp_path, good_root, outdir):
    bad = tmp_path / "truncated.root"
    bad.write_bytes(good_root.read_bytes()[:600])
    code, err = run(capsys, "prepare", str(bad), "--source", "nanoaod", "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "truncated.root")


def test_empty_file(capsys, tmp_path, outdir):
    empty = tmp_path / "empty.root"
    empty.touch()
    code, err = run(capsys, "prepare", str(empty), "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "file is empty")


def test_empty_tree(capsys, tmp_path, outdir):
    data = random_nanoaod(np.random.default_rng(0), 5)
    data = {k: v[:0] for k, v in data.items()}
    src = write_tree(tmp_path / "none.root", data)
    code, err = run(capsys, "prepare", str(src), "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "no events")


def test_missing_tree(capsys, tmp_path, outdir):
    src = write_tree(tmp_path / "other.root", random_nanoaod(np.random.default_rng(0), 5), tree="Other")
    code, err = run(capsys, "prepare", str(src), "--source", "nanoaod", "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "no tree 'Events'", "trees in the file: Other")
    code, err = run(capsys, "prepare", str(src), "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "--source auto found no matching schema", "nanoaod")


def test_missing_branch_names_closest(capsys, tmp_path, outdir):
    import awkward as ak

    data = random_nanoaod(np.random.default_rng(0), 5)
    jets = data["Jet"]
    data["Jet"] = ak.zip({"pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "mass": jets.mass,
                          "btagDeepFlavB": jets.btagDeepB})
    src = write_tree(tmp_path / "nobtag.root", data)
    code, err = run(capsys, "prepare", str(src), "--source", "nanoaod", "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "no branch 'Jet_btagDeepB'", "closest: Jet_btagDeepFlavB")


def test_missing_id_or_isolation_branch(capsys, tmp_path, outdir):
    import awkward as ak

    data = random_nanoaod(np.random.default_rng(0), 5)
    data["Muon"] = data["Muon"][[f for f in ak.fields(data["Muon"]) if f != "mediumId"]]
    data["Photon"] = data["Photon"][[f for f in ak.fields(data["Photon"]) if f != "pfRelIso03_all"]]
    src = write_tree(tmp_path / "noid.root", data)
    code, err = run(capsys, "prepare", str(src), "--source", "nanoaod", "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "no branch 'Muon_mediumId'")
    schema = tmp_path / "s.yaml"
    schema.write_text("collections:\n  photon: {kinematics: ptetaphim, pt: Photon_pt, eta: Photon_eta, "
                      "phi: Photon_phi, isolation: Photon_pfRelIso03_all}\nmet: {kinematics: ptphi, pt: MET_pt, "
                      "phi: MET_phi}\n")
    code, err = run(capsys, "prepare", str(src), "--source", str(schema), "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "no branch 'Photon_pfRelIso03_all'", "closest: Electron_pfRelIso03_all")
    # --source auto matches no built-in schema without the ID branches
    code, err = run(capsys, "prepare", str(src), "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "--source auto found no matching schema")


def test_nan_is_an_error_with_count_and_ids(capsys, tmp_path, outdir):
    data = random_nanoaod(np.random.default_rng(0), 300, nan_event=250)
    data["Jet"]["pt"] = data["Jet"].pt  # keep the record as it is
    src = write_tree(tmp_path / "nan.root", data)
    # chunk size 100: the first two chunks are written before the NaN is met, and must not survive.
    code, err = run(capsys, "prepare", str(src), "--chunk-size", "100", "--out", str(outdir / "x.h5"), "-q")
    assert_clean_failure(code, err, outdir, "1 event(s)", "NaN or inf", "MET", "first event IDs: 1250",
                         "--on-error skip")
    code, err = run(capsys, "prepare", str(src), "--chunk-size", "100", "--out", str(outdir / "x.h5"), "-q",
                    "--on-error", "skip")
    assert code == 0
    import h5py

    with h5py.File(outdir / "x.h5") as h:
        assert len(h["objects"]) == 299 and int(h.attrs["n_skipped"]) == 1
        assert 1250 not in h["event_id"][:]


def test_inf_in_object_feature(capsys, tmp_path, outdir):
    data = random_nanoaod(np.random.default_rng(0), 20)
    import awkward as ak

    pt = ak.to_numpy(ak.flatten(data["Muon"].pt)).copy()
    counts = ak.num(data["Muon"])
    first = int(np.argmax(ak.to_numpy(counts) > 0))
    pt[int(ak.sum(counts[:first]))] = np.inf
    data["Muon"] = ak.with_field(data["Muon"], ak.unflatten(pt, counts), "pt")
    src = write_tree(tmp_path / "inf.root", data)
    code, err = run(capsys, "prepare", str(src), "--out", str(outdir / "x.h5"))
    assert_clean_failure(code, err, outdir, "NaN or inf", f"first event IDs: {1000 + first}")


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--bogus"], ["unrecognized arguments: --bogus", "--help"]),
        (["--source", "cms"], ["unknown source 'cms'", "auto", "darkmachines", "nanoaod", "delphes"]),
        (["--channel", "chan9"], ["unknown channel 'chan9'", "chan1", "chan2a", "none"]),
        (["--layout", "round"], ["unknown layout 'round'", "default", "single_list"]),
        (["--on-error", "ignore"], ["invalid choice", "fail", "skip"]),
        (["--set", "colour=red"], ["unknown key 'colour'", "chunk_size", "max_events"]),
        (["--chunk-size", "0"], ["chunk_size", "at least 1"]),
        (["--shard", "4/4"], ["--shard '4/4'", "0 <= I < N"]),
        (["--shard", "x"], ["must look like I/N"]),
        (["--source", "missing.yaml"], ["source file not found: missing.yaml"]),
    ],
)
def test_bad_options(capsys, good_root, outdir, argv, fragments):
    code, err = run(capsys, "prepare", str(good_root), "--out", str(outdir / "x.h5"), *argv)
    assert_clean_failure(code, err, outdir, *fragments)


def test_missing_output_folder(capsys, good_root, tmp_path):
    code, err = run(capsys, "prepare", str(good_root), "--out", str(tmp_path / "no" / "x.h5"))
    assert code != 0 and "output folder does not exist" in err


def test_inspect_and_merge_bad_files(capsys, tmp_path, outdir):
    text = tmp_path / "t.h5"
    text.write_text("hello")
    code, err = run(capsys, "inspect", str(text))
    assert code == 2 and "not an HDF5 file" in err and len(err.splitlines()) == 1
    code, err = run(capsys, "inspect", str(tmp_path / "missing.h5"))
    assert code == 2 and "event file not found" in err
    code, err = run(capsys, "merge", str(text), "--out", str(outdir / "m.h5"))
    assert_clean_failure(code, err, outdir, "not an HDF5 file")


def test_exit_status_from_the_console_script(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "darkflow", "prepare", "nope.root", "--out", str(tmp_path / "x.h5")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "darkflow prepare: error: input file not found: nope.root"
