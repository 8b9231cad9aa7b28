"""``darkflow flag --run --data`` and ``darkflow flag --scores --label`` write the same candidates CSV.

A small VAE is trained on prepared NanoAOD-like events; the signal file is flagged once by scoring it on the fly
and once from the scores file ``darkflow score`` wrote for it and the calibration file.
"""

from __future__ import annotations

import csv

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.analysis.flag import flag, flag_events
from darkflow.analysis.metrics import threshold_at_efficiency
from darkflow.data_prep.features import HLF_NAMES
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.train.run import TrainOptions, load_train_config, train
from darkflow.train.score import score

SMALL = {"model.latent": 4, "model.context": 8, "model.hidden": 16, "model.channels": [8, 8],
         "model.flow": "none", "training.batch_size": 256, "training.epochs": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("flag_forms")
    files = {}
    for name, seed, n in (("sm", 0, 600), ("cal", 3, 800), ("dm_monojet", 2, 300)):
        arrays = random_nanoaod(np.random.default_rng(seed), n)
        arrays["event"] += 100_000 * seed
        src = write_tree(d / f"{name}.root", arrays)
        files[name] = d / f"{name}.h5"
        prepare(PrepareConfig(inputs=[str(src)], out=str(files[name])), progress=False)
    out = d / "run"
    train(load_train_config("convvae", SMALL), TrainOptions(data=str(files["sm"]), out=str(out), progress=False))
    return out, files


def _table(path):
    lines = path.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    return header, list(csv.reader(line for line in lines if not line.startswith("#")))


@pytest.mark.parametrize("how", ["eps_b", "threshold"])
def test_both_forms_write_the_same_candidates(run, tmp_path, how):
    out, files = run
    scores = tmp_path / "scores.h5"
    score(out, [files["cal"], files["dm_monojet"]], scores)
    with h5py.File(scores) as handle:
        assert set(handle) == {"cal", "dm_monojet"}  # the labels the flagged samples are named by
        name = handle.attrs["default_score"]
        total, cal, w_cal = handle[f"dm_monojet/{name}"][:], handle[f"cal/{name}"][:], handle["cal/weight"][:]
    threshold = threshold_at_efficiency(cal, w_cal, 0.05).value if how == "eps_b" else float(np.median(total))
    given = {"eps_b": "0.05"} if how == "eps_b" else {"threshold": threshold}
    by_run = flag_events(out, files["dm_monojet"], tmp_path / "run.csv", calibration=files["cal"], **given)
    by_scores = flag(scores, "dm_monojet", tmp_path / "scores.csv", calibration="cal" if how == "eps_b" else None,
                     **given)
    assert by_run.label == by_scores.label == "dm_monojet"
    assert by_run.threshold == by_scores.threshold == pytest.approx(threshold, rel=1e-12)
    assert by_run.columns == by_scores.columns and by_run.columns[2] == name
    expected = [n for n in ("MET", "HT", "m_eff") if n in HLF_NAMES]
    expected += sorted(n for n in HLF_NAMES if n not in ("MET", "HT", "m_eff", "MET_phi"))
    assert by_run.columns[-len(expected):] == expected and "MET_phi" not in by_run.columns
    assert any(c.startswith("n_") for c in expected)  # the multiplicities

    head_run, rows_run = _table(tmp_path / "run.csv")
    head_scores, rows_scores = _table(tmp_path / "scores.csv")
    assert head_run == head_scores and len(head_run) == 2
    assert head_run[0] == (f"# threshold={threshold!r}, eps_B={'0.05' if how == 'eps_b' else 'none'}, "
                           f"calibration={'cal' if how == 'eps_b' else 'none'}, run={out}, score={name}")
    assert f"sample=dm_monojet, events=300, flagged={int(np.sum(total > threshold))}" in head_run[1]
    assert rows_run == rows_scores and len(rows_run) == 1 + int(np.sum(total > threshold)) > 1
    rows = [dict(zip(rows_run[0], r, strict=True)) for r in rows_run[1:]]
    with h5py.File(files["dm_monojet"]) as handle:
        hlf, ids = handle["hlf"][:].astype(np.float64), handle["event_id"][:]
    position = {int(e): i for i, e in enumerate(ids)}
    for row in rows:
        i = position[int(row["event_id"])]
        for feature in expected:
            assert float(row[feature]) == hlf[i, HLF_NAMES.index(feature)]
        assert float(row[name]) == total[i] and float(row[name]) > threshold
