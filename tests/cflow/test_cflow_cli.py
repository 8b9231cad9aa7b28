"""``darkflow cflow`` errors: one line, non-zero exit, no traceback, no output left behind."""

import pytest

from darkflow.cli import main


@pytest.mark.parametrize("argv, message", [
    (["cflow", "train", "--data", "{tmp}/nowhere", "--out", "{tmp}/run"], "no such file or folder"),
    (["cflow", "train", "--data", "{tmp}", "--out", "{tmp}/run"], "no images in train/good"),
    (["cflow", "train", "--data", "{folder}", "--out", "{tmp}/run", "--model", "nope"], "unknown CFLOW config 'cflow_nope'"),
    (["cflow", "train", "--data", "{folder}", "--out", "{tmp}/run", "--flow", "bogus"], "unknown flow 'bogus'"),
    (["cflow", "train", "--data", "{folder}", "--out", "{tmp}/run", "--set", "decoder.blokcs=2"], "unknown key 'blokcs'"),
    (["cflow", "train", "--data", "{folder}", "--out", "{tmp}/run", "--image-size", "4"], "image_size"),
    (["cflow", "score", "--run", "{tmp}", "--data", "{folder}", "--out", "{tmp}/out"], "no CFLOW model"),
    (["cflow", "score", "--run", "{run}", "--data", "{tmp}/nowhere", "--out", "{tmp}/out"], "no such file"),
])
def test_one_line_errors(argv, message, tmp_path, synthetic_folder, tiny_run, capsys):
    values = {"tmp": tmp_path, "folder": synthetic_folder, "run": tiny_run}
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_torchvision_encoder_without_torchvision(tmp_path, synthetic_folder, capsys):
    try:
        import torchvision  # noqa: F401

        pytest.skip("torchvision importable here: the missing-extra message cannot be tested")
    except Exception:
        pass
    argv = ["cflow", "train", "--data", str(synthetic_folder), "--out", str(tmp_path / "run"), "--encoder",
            "resnet18", "--image-size", "32"]
    assert main(argv) == 2
    assert "darkflow[vision]" in capsys.readouterr().err


def test_score_wrong_shape(tmp_path, tiny_run, capsys):
    from darkflow.cflow.synthetic import write_synthetic

    rgb = write_synthetic(tmp_path / "rgb", size=32, n_train=2, n_test_good=1, n_test_defect=1, rgb=True)
    assert main(["cflow", "score", "--run", str(tiny_run), "--data", str(rgb), "--out", str(tmp_path / "o")]) == 2
    assert "trained on (1, 32, 32)" in capsys.readouterr().err
