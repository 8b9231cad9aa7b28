"""CFLOW-AD inputs and outputs under bad input, failure and interruption: masks of the wrong size are refused,
the run directory, the score folder and the ONNX file are all or nothing, and the loaders form no import
cycle."""

from __future__ import annotations

import ast
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import signal_when_ready
from PIL import Image

from darkflow.cflow.folder import load_folder
from darkflow.cflow.load import load_images
from darkflow.cflow.synthetic import DEFECTS, write_synthetic
from darkflow.cli import main
from darkflow.errors import InputError
from darkflow.fileio import leftovers

CFLOW = Path(__file__).resolve().parents[2] / "darkflow" / "cflow"


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cflow_imports(module: str) -> set[str]:
    """The ``darkflow.cflow`` modules that ``module`` imports anywhere (top level or inside functions)."""
    tree = ast.parse((CFLOW / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("darkflow.cflow."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("darkflow.cflow.")}
    return found


def test_no_import_cycle_between_the_loaders():
    graph = {m: cflow_imports(m) for m in ("imageset", "folder", "h5images", "load")}
    assert graph["imageset"] == set()
    assert graph["folder"] == {"imageset"} and graph["h5images"] == {"imageset"}
    assert graph["load"] == {"imageset", "folder", "h5images"}
    for module in ("folder", "h5images", "imageset", "load"):  # each imports on its own, in a fresh interpreter
        done = subprocess.run([sys.executable, "-c", f"import darkflow.cflow.{module}"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("mask_size, image_size", [(8, None), (8, 32), (64, 16)])
def test_a_mask_of_another_size_is_refused(tmp_path, mask_size, image_size):
    root = write_synthetic(tmp_path / "set", size=32, n_train=2, n_test_good=1, n_test_defect=1)
    mask = root / "ground_truth" / "blobs" / "000_mask.png"
    Image.fromarray(np.full((mask_size, mask_size), 255, dtype=np.uint8)).save(mask)
    with pytest.raises(InputError) as info:
        load_folder(root, "test", image_size=image_size)
    message = str(info.value)
    assert f"mask is {mask_size}x{mask_size} but its image is 32x32" in message and "\n" not in message
    assert "000_mask.png" in message


def test_matching_masks_are_resized_with_their_images(tmp_path):
    root = write_synthetic(tmp_path / "set", size=32, n_train=2, n_test_good=1, n_test_defect=1)
    native = load_folder(root, "test")
    half = load_folder(root, "test", image_size=16)
    assert half.masks.shape == (len(native), 16, 16) and half.masks.dtype == bool
    for full, small in zip(native.masks, half.masks, strict=True):
        expected = np.asarray(Image.fromarray(full.astype(np.uint8) * 255).resize((16, 16),
                                                                              Image.Resampling.NEAREST)) > 0
        np.testing.assert_array_equal(small, expected)


def test_cflow_score_refuses_small_masks_in_one_line(tmp_path, tiny_run, capsys):
    root = write_synthetic(tmp_path / "set", size=32, n_train=2, n_test_good=1, n_test_defect=1)
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(root / "ground_truth" / "blobs" / "000_mask.png")
    assert main(["cflow", "score", "--run", str(tiny_run), "--data", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "mask is 8x8 but its image is 32x32" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("what", ["fifo", "folder_as_file", "missing"])
def test_image_inputs_say_what_is_wrong(tmp_path, what):
    path = tmp_path / "x.h5"
    expect = {"fifo": "not a regular file", "folder_as_file": "give either one image folder",
              "missing": "no such file or folder"}[what]
    if what == "fifo":
        os.mkfifo(path)
        paths = [path]
    elif what == "folder_as_file":
        path.mkdir()
        paths = [path, tmp_path / "y.h5"]
    else:
        paths = [path]
    with pytest.raises(InputError, match=expect):
        load_images(paths, "test")


def test_failed_train_leaves_no_run_and_an_existing_folder_unchanged(tmp_path, quick_config):
    from darkflow.cflow.train import CflowTrainOptions, train_cflow

    one = write_synthetic(tmp_path / "one", size=32, n_train=1, n_test_good=1, n_test_defect=1)
    with pytest.raises(InputError, match="need at least 2"):
        train_cflow(quick_config(32), CflowTrainOptions(data=[str(one)], out=str(tmp_path / "run"), progress=False))
    assert not (tmp_path / "run").exists() and leftovers(tmp_path) == []
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.yaml").write_text("mine\n")
    before = tree_digest(existing)
    with pytest.raises(InputError, match="need at least 2"):
        train_cflow(quick_config(32), CflowTrainOptions(data=[str(one)], out=str(existing), progress=False))
    assert tree_digest(existing) == before and leftovers(tmp_path) == []
    with pytest.raises(InputError, match="also an input"):
        train_cflow(quick_config(32), CflowTrainOptions(data=[str(one)], out=str(one), progress=False))


def test_failed_score_leaves_an_existing_folder_unchanged(tmp_path, tiny_run, synthetic_folder):
    from darkflow.cflow.score import score_cflow

    out = tmp_path / "scores"
    out.mkdir()
    (out / "metrics.csv").write_text("an earlier result\n")
    (out / "overlays").mkdir()
    (out / "overlays" / "00_old.png").write_bytes(b"old")
    before = tree_digest(out)
    rgb = write_synthetic(tmp_path / "rgb", size=32, n_train=2, n_test_good=1, n_test_defect=1, rgb=True)
    with pytest.raises(InputError, match="trained on"):
        score_cflow(tiny_run, [str(rgb)], out)
    assert tree_digest(out) == before and leftovers(tmp_path) == [] and leftovers(out) == []
    for same in (tiny_run, synthetic_folder):
        with pytest.raises(InputError, match="also an input"):
            score_cflow(tiny_run, [str(synthetic_folder)], same)
    assert (tiny_run / "cflow.pt").is_file() and (tiny_run / "metrics.csv").read_text().startswith("stage,epoch,loss")
    result = score_cflow(tiny_run, [str(synthetic_folder)], out, overlays=2)
    assert result["out"] == out and (out / "maps.h5").is_file()
    assert (out / "metrics.csv").read_text().startswith("image_auroc,pixel_auroc,aupro\n")
    assert sorted(p.name.split("_")[0] for p in (out / "overlays").iterdir()) == ["00", "01"]
    assert not (out / "overlays" / "00_old.png").exists() and leftovers(out) == []


def test_export_refuses_the_run_file_and_leaves_an_existing_file(tmp_path, tiny_run):
    from darkflow.cflow.export import export_onnx

    before = hashlib.sha256((tiny_run / "cflow.pt").read_bytes()).hexdigest()
    with pytest.raises(InputError, match="also an input"):
        export_onnx(tiny_run / "cflow.pt", tiny_run / "cflow.pt")
    assert hashlib.sha256((tiny_run / "cflow.pt").read_bytes()).hexdigest() == before
    out = tmp_path / "model.onnx"
    out.write_bytes(b"earlier")
    with pytest.raises(InputError, match="no CFLOW model"):
        export_onnx(tmp_path / "nowhere", out)
    assert out.read_bytes() == b"earlier" and leftovers(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True])
def test_sigterm_during_cflow_train_leaves_nothing(tmp_path, synthetic_folder, existing):
    run = tmp_path / "run"
    if existing:
        run.mkdir()
        (run / "notes.txt").write_text("kept")
    before = tree_digest(run) if existing else None
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "darkflow", "cflow", "train", "--data", str(synthetic_folder),
                             "--out", str(run), "--epochs", "10000", "--image-size", "32", "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    err = signal_when_ready(proc, signal.SIGTERM, lambda: bool(leftovers(tmp_path)), settle=2)
    assert proc.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "interrupted by SIGTERM" in err, err
    assert leftovers(tmp_path) == []
    if existing:
        assert tree_digest(run) == before and leftovers(run) == []
    else:
        assert not run.exists()


def test_synthetic_set_is_written_all_at_once(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    (root / "README").write_text("kept")
    (root / "train" / "good").mkdir(parents=True)
    (root / "train" / "good" / "stale.png").write_bytes(b"stale")
    write_synthetic(root, size=16, n_train=2, n_test_good=1, n_test_defect=1)
    assert (root / "README").read_text() == "kept"
    assert sorted(p.name for p in (root / "train" / "good").iterdir()) == ["000.png", "001.png"]
    assert leftovers(tmp_path) == [] and leftovers(root) == []
    assert len(load_folder(root, "test")) == 1 + len(DEFECTS)
