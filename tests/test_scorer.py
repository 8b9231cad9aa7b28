"""``darkflow.Scorer`` on the CMS Open Data file: equal to ``prepare`` + ``score`` on the same events (to float32
round-off), aligned 1:1 with the input events, NaN exactly for the events failing the run's channel (checked
against the independent per-event reference of tests/data_prep/reference.py), the same on NanoEvents-like and
flat arrays, in pieces, after pickling, and inside ``dask_awkward.map_partitions`` over ``uproot.dask``."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import torch
import uproot

from darkflow.cli import main
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import InputError

sys.path.insert(0, str(Path(__file__).parent / "data_prep"))
from reference import event_objects, hlf  # noqa: E402

SOURCE = "nanoaod_opendata2015"
MEFF_MIN = 80.0
TINY = ["--model", "convvae", "--epochs", "1", "--batch-size", "32", "-q", "--set", "model.latent=4",
        "--set", "model.context=8", "--set", "model.hidden=32", "--set", "model.channels=[8, 16]"]


@pytest.fixture(scope="module")
def setup(real_nanoaod, tmp_path_factory):
    """A run trained on the CMS file in a channel m_eff >= 80 GeV, and ``darkflow score`` of that file."""
    d = tmp_path_factory.mktemp("scorer")
    channel = d / "meff80.yaml"
    channel.write_text(f"meff_min: {MEFF_MIN}\n")
    prepared = d / "ttbar.h5"
    prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(prepared), source=SOURCE, channel=str(channel)),
            progress=False)
    run = d / "run"
    assert main(["train", "--data", str(prepared), "--out", str(run), *TINY]) == 0
    scores = d / "scores.h5"
    assert main(["score", "--run", str(run), "--data", str(prepared), "--out", str(scores)]) == 0
    with h5py.File(scores, "r") as handle:
        reference = {k: v[:] for k, v in handle["ttbar"].items()}
    return run, reference, prepared


@pytest.fixture(scope="module")
def scorer(setup):
    from darkflow import Scorer

    return Scorer(setup[0], device="cpu")


@pytest.fixture(scope="module")
def flat(real_nanoaod):
    return uproot.open(real_nanoaod)["Events"].arrays(library="ak")


def nanoevents_like(flat: ak.Array) -> ak.Array:
    """The flat branches as NanoEvents lays them out: ``Jet_pt`` -> ``events.Jet.pt``; counters dropped."""
    groups: dict[str, dict[str, ak.Array]] = {}
    out: dict[str, ak.Array] = {}
    for name in flat.fields:
        head, sep, rest = name.partition("_")
        if sep and f"n{head}" in flat.fields or head == "MET":
            groups.setdefault(head, {})[rest] = flat[name]
        elif not name.startswith("n"):
            out[name] = flat[name]
    for head, fields in groups.items():
        out[head] = ak.zip(fields, depth_limit=None if head != "MET" else 1)
    return ak.zip(out, depth_limit=1)


def test_equals_prepare_and_score_with_nan_for_events_failing_the_channel(setup, scorer, flat):
    _, reference, _ = setup
    out = scorer(flat)
    assert len(out) == len(flat) == 200
    assert out.fields == [*scorer.names, "selected"]
    assert {"total", "latent_nll", "hlf:m_eff"} <= set(scorer.names) and scorer.default_score in scorer.names
    selected = ak.to_numpy(out.selected)
    # which events pass, from the independent per-event reference (objects, then m_eff >= 80)
    arrays = {k: ak.to_list(flat[k]) for k in flat.fields}
    expected = []
    for i in range(len(flat)):
        event = {k: np.asarray(v[i]) if isinstance(v[i], list) else v[i] for k, v in arrays.items()}
        objs = event_objects(event, SOURCE)
        expected.append(hlf(objs, float(event["MET_pt"]), float(event["MET_phi"]))[3] >= MEFF_MIN)
    np.testing.assert_array_equal(selected, expected)
    assert 0 < selected.sum() < len(flat)
    np.testing.assert_array_equal(ak.to_numpy(flat.event)[selected], reference["event_id"])
    for name in scorer.names:
        values = ak.to_numpy(out[name])
        assert values.dtype == np.float64
        assert np.isnan(values[~selected]).all(), name
        np.testing.assert_allclose(values[selected], reference[name], rtol=2e-6, atol=1e-6, err_msg=name)


def test_nanoevents_layout_mapping_and_pieces_give_the_same_scores(scorer, flat, real_nanoaod):
    whole = scorer(flat)
    nested = nanoevents_like(flat)
    assert "Jet_pt" not in nested.fields and "pt" in nested.Jet.fields
    by_branch = {name: flat[name] for name in scorer.branches()}
    pieces = ak.concatenate([scorer(flat[i:i + 37]) for i in range(0, len(flat), 37)])
    for other in (scorer(nested), scorer.score_arrays(by_branch), pieces, scorer.score_file(real_nanoaod)):
        assert ak.all(ak.isclose(other[scorer.default_score], whole[scorer.default_score], rtol=1e-6, equal_nan=True))
        assert ak.all(other.selected == whole.selected)
    part = scorer.score_file(real_nanoaod, start=10, stop=150)
    assert len(part) == 140 and ak.all(part.selected == whole.selected[10:150])
    assert ak.all(ak.isclose(part["hlf:HT"], whole["hlf:HT"][10:150], equal_nan=True))


def test_an_event_with_nan_input_gets_nan_and_the_others_keep_their_scores(scorer, flat):
    whole = scorer(flat)
    target = int(np.flatnonzero(ak.to_numpy(whole.selected))[0])
    pt = ak.to_list(flat.Jet_pt)
    pt[target] = [float("nan")] * len(pt[target])
    broken = ak.with_field(flat, ak.Array(pt), "Jet_pt")
    out = scorer(broken)
    assert not out.selected[target] and np.isnan(out[scorer.default_score][target])
    others = np.arange(len(flat)) != target
    np.testing.assert_array_equal(ak.to_numpy(out.selected)[others], ak.to_numpy(whole.selected)[others])
    np.testing.assert_array_equal(ak.to_numpy(out.total)[others], ak.to_numpy(whole.total)[others])


def test_pickled_scorer_loads_its_model_lazily_and_scores_alike(scorer, flat):
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy._model is None
    assert ak.all(ak.isclose(copy(flat).total, scorer(flat).total, rtol=0, atol=0, equal_nan=True))
    assert copy._model is not None
    again = pickle.loads(pickle.dumps(scorer))
    assert again.model is copy.model  # one load per process, however many copies an executor unpickles


def test_dask_map_partitions_over_uproot_dask_reads_only_the_branches_used(scorer, flat, real_nanoaod):
    import dask
    import dask_awkward as dak

    events = uproot.dask({str(real_nanoaod): "Events"}, step_size=64)
    assert events.npartitions > 1
    scores = scorer.dask(events)
    (read,) = dak.report_necessary_columns(scores).values()
    assert set(read) == set(scorer.branches())
    assert isinstance(scorer(events), dak.Array)
    (computed,) = dask.compute(scores, scheduler="sync")
    whole = scorer(flat)
    assert computed.fields == whole.fields
    assert ak.all(computed.selected == whole.selected)
    for name in scorer.names:  # other batches than in one call: float32 round-off
        assert ak.all(ak.isclose(computed[name], whole[name], rtol=2e-6, atol=1e-6, equal_nan=True)), name


def test_events_without_a_branch_of_the_schema_are_refused_in_one_line(scorer, flat):
    with pytest.raises(InputError, match=r"no field 'MET_pt'.*Scorer.branches\(\)") as err:
        scorer(flat[[f for f in flat.fields if f != "MET_pt"]])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("model", ["isoforest", "hlf_density", "density", "svdd"])
def test_baselines_equal_prepare_and_score(setup, flat, tmp_path, model):
    from darkflow import Scorer

    _, _, prepared = setup
    run, scores = tmp_path / "run", tmp_path / "scores.h5"
    assert main(["train", "--data", str(prepared), "--out", str(run), "--model", model, "--epochs", "1",
                 "--batch-size", "32", "-q"]) == 0
    assert main(["score", "--run", str(run), "--data", str(prepared), "--out", str(scores)]) == 0
    scorer = Scorer(run, device="cpu")
    out = scorer(flat)
    selected = ak.to_numpy(out.selected)
    with h5py.File(scores, "r") as handle:
        group = handle["ttbar"]
        assert "total" in scorer.names and set(scorer.names) <= set(group)
        for name in scorer.names:
            assert np.isnan(ak.to_numpy(out[name])[~selected]).all()
            np.testing.assert_allclose(ak.to_numpy(out[name])[selected], group[name][:], rtol=2e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_scores_equal_cpu_scores(setup, scorer, flat):
    from darkflow import Scorer

    on_gpu = Scorer(setup[0], device="cuda")
    assert next(on_gpu.model.parameters()).is_cuda
    gpu, cpu = on_gpu(flat), scorer(flat)
    assert ak.all(gpu.selected == cpu.selected)
    for name in scorer.names:  # TF32 / other kernels: a looser float32 tolerance
        assert ak.all(ak.isclose(gpu[name], cpu[name], rtol=1e-3, atol=1e-3, equal_nan=True)), name


def test_unusable_device_and_missing_run_are_refused_in_one_line(setup, tmp_path):
    from darkflow import Scorer

    with pytest.raises(InputError, match="device 'nonsense' cannot be used") as err:
        Scorer(setup[0], device="nonsense")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="no trained model at"):
        Scorer(tmp_path / "no_run", device="cpu")


def test_importing_darkflow_stays_light():
    code = ("import sys, darkflow; assert 'torch' not in sys.modules and 'darkflow.scorer' not in sys.modules; "
            "from darkflow import Scorer; assert Scorer.__module__ == 'darkflow.scorer'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["coffea", "dask"])
def test_example_scores_inside_an_analysis_as_prepare_and_score_do(setup, scorer, flat, real_nanoaod, tmp_path,
                                                                   engine):
    """examples/score_in_analysis.py (in README): a coffea processor, or map_partitions over uproot.dask, in two
    processes over partitions of 64 events."""
    import importlib.util
    import os

    if engine == "coffea" and importlib.util.find_spec("coffea") is None:
        if os.environ.get("CI"):
            pytest.fail("coffea is not installed; CI installs the dev extra, which includes coffea")
        pytest.skip("coffea is not installed (extra `coffea`)")
    run, reference, _ = setup
    out = tmp_path / "scores.npz"
    example = Path(__file__).resolve().parents[1] / "examples" / "score_in_analysis.py"
    done = subprocess.run([sys.executable, str(example), str(real_nanoaod), "--run", str(run), "--out", str(out),
                           "--engine", engine, "--workers", "2", "--chunk-size", "64", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    selected = ak.to_numpy(scorer(flat).selected)
    assert f"{engine}: 200 events read, {selected.sum()} selected" in done.stdout
    with np.load(out) as columns:
        np.testing.assert_array_equal(columns["event"], ak.to_numpy(flat.event))
        np.testing.assert_array_equal(columns["selected"], selected)
        np.testing.assert_array_equal(columns["MET"], ak.to_numpy(flat.MET_pt))
        for name in scorer.names:
            assert np.isnan(columns[name][~selected]).all(), name
            np.testing.assert_allclose(columns[name][selected], reference[name], rtol=2e-6, atol=1e-6, err_msg=name)


def test_conversion_comes_from_the_run_when_the_training_file_is_gone(setup, scorer, flat, real_nanoaod, tmp_path):
    """Built-in source: the run's own description is enough. A source YAML of the user's: read from the training
    file's attributes while it exists, refused in one line once it is gone (unless ``source`` is given)."""
    from darkflow import Scorer
    from darkflow.data_prep import builtin

    custom = tmp_path / "my_nanoaod.yaml"
    custom.write_text(builtin.resolve("sources", SOURCE).read_text())
    whole = scorer(flat)
    for source in (SOURCE, str(custom)):
        prepared, run = tmp_path / f"{Path(source).stem}.h5", tmp_path / f"run_{Path(source).stem}"
        prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(prepared), source=source,
                              channel=str(setup[2].parent / "meff80.yaml")), progress=False)
        assert main(["train", "--data", str(prepared), "--out", str(run), "--model", "isoforest", "-q"]) == 0
        before = Scorer(run, device="cpu")
        assert before.schema.name == Path(source).stem and before.channel.meff_min == MEFF_MIN
        prepared.unlink()
        if source == SOURCE:
            after = Scorer(run, device="cpu")
            assert after.schema == before.schema and after.objects_definition == before.objects_definition
        else:
            with pytest.raises(InputError, match="source 'my_nanoaod', which is not built in") as err:
                Scorer(run, device="cpu")
            assert "\n" not in str(err.value)
            after = Scorer(run, device="cpu", source=str(custom))
        out = after(flat)
        assert ak.all(out.selected == whole.selected)
        assert ak.all(ak.isclose(out["hlf:m_eff"], whole["hlf:m_eff"], rtol=0, atol=0, equal_nan=True))
