"""ONNX export of the scoring path, checked against PyTorch with onnxruntime."""

import numpy as np
import pytest

from darkflow.cflow.export import export_onnx
from darkflow.cflow.folder import load_folder
from darkflow.cflow.score import predict
from darkflow.cflow.train import load_run
from darkflow.errors import InputError


def test_onnx_matches_pytorch(tiny_run, synthetic_folder, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = export_onnx(tiny_run, tmp_path / "cflow.onnx")
    assert out == tmp_path / "cflow.onnx" and not list(tmp_path.glob(".*tmp*"))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["map", "score"]
    images = load_folder(synthetic_folder, "test").images
    model, _ = load_run(tiny_run)
    maps, scores = predict(model, images)
    for batch in (images[:1], images):  # the batch size is dynamic
        onnx_map, onnx_score = session.run(["map", "score"], {"image": batch})
        np.testing.assert_allclose(onnx_map, maps[: len(batch)], atol=1e-4)
        np.testing.assert_allclose(onnx_score, scores[: len(batch)], atol=1e-4)


def test_export_bad_inputs(tmp_path, tiny_run):
    with pytest.raises(InputError, match="no CFLOW model"):
        export_onnx(tmp_path, tmp_path / "x.onnx")
    with pytest.raises(InputError, match="does not exist"):
        export_onnx(tiny_run, tmp_path / "missing" / "x.onnx")


def test_darkflow_export_command_dispatches_to_cflow(tiny_run, tmp_path, capsys):
    from darkflow.cli import main

    out = tmp_path / "model.onnx"
    assert main(["export", "--run", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert main(["export", "--run", str(tmp_path / "nope"), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "run directory not found" in err and len(err.splitlines()) == 1
