"""``darkflow cflow train --model mvg`` end to end: the closed-form Gaussian, scored, exported to ONNX like CFLOW;
the decoders' progress lines report images/s."""

import csv

import numpy as np
import pytest

from darkflow.cli import main


def test_mvg_train_score_export(tmp_path, synthetic_folder, capsys):
    run, out = tmp_path / "mvg", tmp_path / "scores"
    assert main(["cflow", "train", "--model", "mvg", "--data", str(synthetic_folder), "--out", str(run), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "fitted the Gaussian (mvg)" in printed
    assert main(["cflow", "score", "--run", str(run), "--data", str(synthetic_folder), "--out", str(out),
                 "--overlays", "2"]) == 0
    with open(out / "metrics.csv") as handle:
        metrics = next(csv.DictReader(handle))
    assert float(metrics["image_auroc"]) > 0.8 and float(metrics["pixel_auroc"]) > 0.8
    assert len(list((out / "overlays").glob("*.png"))) == 2

    ort = pytest.importorskip("onnxruntime")
    from darkflow.cflow.export import export_onnx
    from darkflow.cflow.folder import load_folder
    from darkflow.cflow.score import predict
    from darkflow.cflow.train import load_run

    model, meta = load_run(run)
    assert model.mvg and meta["config"]["decoder"]["flow"] == "none"
    images = load_folder(synthetic_folder, "test").images
    maps, scores = predict(model, images)
    session = ort.InferenceSession(str(export_onnx(run, tmp_path / "mvg.onnx")), providers=["CPUExecutionProvider"])
    onnx_map, onnx_score = session.run(["map", "score"], {"image": images})
    np.testing.assert_allclose(onnx_map, maps, atol=1e-4)
    np.testing.assert_allclose(onnx_score, scores, atol=1e-4)


def test_cflow_progress_reports_images_per_second(tmp_path, synthetic_folder, capsys):
    run = tmp_path / "run"
    assert main(["cflow", "train", "--data", str(synthetic_folder), "--out", str(run), "--epochs", "2",
                 "--set", "decoder.blocks=1", "--set", "encoder.channels=[4,8]"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("cflow decoders epoch")]
    assert len(lines) == 2 and all("images/s" in line and "fiber NLL" in line for line in lines)
