"""``darkflow score`` on a Dask cluster writes the single-process scores file, dataset for dataset."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, tiny_scoring_run, write_tree

from darkflow.cli import main
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError, InputError
from darkflow.fileio import leftovers
from darkflow.train.dask_score import (
    Placement,
    address_host,
    device_and_threads,
    parts,
    placements,
    score_part,
    worker_model,
)
from darkflow.train.score import score, score_file

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny ConvVAE run on ``sm`` (400 events), and ``held`` (250 events, independent of training)."""
    return tiny_scoring_run(tmp_path_factory.mktemp("dask_score"), {"sm": (0, 400), "held": (1, 250)}, id_step=10_000)


def assert_same_scores(a, b):
    """Every group, dataset (values, dtype, shape, storage), and attribute of the file and its groups."""
    with h5py.File(a) as x, h5py.File(b) as y:
        assert dict(x.attrs) == dict(y.attrs)
        assert list(x) == list(y)
        for label in x:
            assert list(x[label]) == list(y[label]), label
            assert dict(x[label].attrs) == dict(y[label].attrs), label
            for name, one in x[label].items():
                other = y[label][name]
                assert (one.dtype, one.shape, one.chunks) == (other.dtype, other.shape, other.chunks), name
                np.testing.assert_array_equal(one[:], other[:], err_msg=f"{label}/{name}")


@pytest.mark.parametrize(("batch_size", "part_events"), [(64, 128), (64, 64), (4096, None)])
def test_cluster_equals_single_process(tmp_path, client, setup, batch_size, part_events):
    files, run = setup
    inputs = [files["held"], files["sm"]]
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    assert score(run, inputs, one, batch_size=batch_size) == {"held": 250, "sm": 400}
    devices: set[str] = set()
    # 64- and 128-event parts: many per file, the last one short, finishing out of order on two workers
    assert score(run, inputs, many, client=client, batch_size=batch_size, part_events=part_events,
                 devices=devices) == {"held": 250, "sm": 400}
    assert devices == {"cpu"}
    assert_same_scores(one, many)
    with h5py.File(many) as h:
        assert set(h["sm"]["split"][:]) == {0, 1} and set(h["held"]["split"][:]) == {-1}
        assert {"total", "reco", "kl", "hlf:MET", "weight"} <= set(h["sm"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.h5", "one.h5"]  # no part or scratch folder left


def test_a_part_is_the_single_process_slice(tmp_path, setup):
    files, run = setup
    model, device = worker_model(str(run), Placement())
    assert worker_model(str(run / "model.pt"), Placement())[0] is model  # loaded once per process
    whole = score_file(model, files["sm"], 64)
    summary = score_part(str(run / "model.pt"), str(files["sm"]), 128, 320, 64, str(tmp_path / "p.h5"), {})
    assert summary == {"part": str(tmp_path / "p.h5"), "events": 192, "keys": list(whole), "device": device}
    assert not any(isinstance(v, np.ndarray) for v in summary.values())  # no scores go back to the client
    with h5py.File(tmp_path / "p.h5") as part:
        assert sorted(part) == sorted(whole)
        for key, values in whole.items():
            assert part[key].dtype == np.float64
            np.testing.assert_array_equal(part[key][:], values[128:320], err_msg=key)


def test_parts_placements_devices_and_threads():
    assert list(parts([("a", 10), ("b", 0), ("c", 4)], 4)) == [
        (0, "a", 0, 4), (0, "a", 4, 8), (0, "a", 8, 10), (2, "c", 0, 4)]
    workers = {"tcp://10.0.0.1:2": 1, "tcp://10.0.0.1:1": 3, "tcp://10.0.0.2:1": 2}
    assert placements(workers) == {"tcp://10.0.0.1:1": Placement(0, 0.75), "tcp://10.0.0.1:2": Placement(1, 0.25),
                                   "tcp://10.0.0.2:1": Placement(0, 1.0)}
    assert [address_host(a) for a in ("tcp://10.0.0.1:8786", "tls://[::1]:80", "inproc://10.0.0.1/123/4",
                                       "node7:8786")] == ["10.0.0.1", "::1", "10.0.0.1", "node7"]
    assert device_and_threads(Placement(1, 0.25), 0, 16) == ("cpu", 4)
    assert device_and_threads(Placement(3, 0.5), 2, 16) == ("cuda:1", 8)
    assert device_and_threads(Placement(0, 1 / 3), 0, 3) == ("cpu", 1)
    assert device_and_threads(Placement(0, 0.25), 0, 2) == ("cpu", 1)  # at least one thread


def test_cli_with_a_scheduler_address(tmp_path, client, setup, capsys):
    files, run = setup
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    data = ["--data", str(files["sm"]), str(files["held"])]
    assert main(["score", "--run", str(run), *data, "--out", str(one)]) == 0
    capsys.readouterr()
    assert main(["score", "--run", str(run), *data, "--out", str(many), "--dask-scheduler",
                 client.scheduler.address]) == 0
    out = capsys.readouterr().out
    assert f"wrote {many}" in out and "scored on the Dask workers' cpu" in out
    assert_same_scores(one, many)


def test_bad_options_and_addresses_are_one_line_before_any_work(tmp_path, setup, capsys):
    files, run = setup
    out = tmp_path / "out.h5"
    base = ["score", "--run", str(run), "--data", str(files["held"]), "--out", str(out)]
    assert main([*base, "--dask-scheduler", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a scheduler address" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit, match="2"):
        main([*base, "--workers", "2", "--dask-scheduler", "a:1"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main([*base, "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "workers: must be at least 1" in err and len(err.splitlines()) == 1
    with pytest.raises(InputError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        score(run, [files["held"]], out, dask_scheduler="tcp://127.0.0.1:9", dask_timeout=0.5)
    with pytest.raises(ConfigError, match="multiple of `batch_size`"):
        score(run, [files["held"]], out, workers=1, batch_size=64, part_events=100)
    with pytest.raises(ConfigError, match="not both"):
        score(run, [files["held"]], out, workers=1, dask_scheduler="a:1")
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_error_on_a_worker_leaves_nothing(tmp_path, client, setup):
    """A task that fails on its worker (here: the run is not readable there, as without a shared file system)
    ends the command with that error; no output, part or scratch folder is left."""
    import shutil

    files, run = setup
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "split.npz").unlink()
    out = tmp_path / "out.h5"
    notes: list[str] = []

    def model_gone(kind: str, line: str) -> None:  # the note on the missing split.npz: the client has the model
        notes.append(line)
        (copy / "model.pt").unlink()

    with pytest.raises(InputError, match="model.pt"):
        score(copy, [files["held"], files["sm"]], out, client=client, batch_size=64, part_events=64,
              notify=model_gone)
    assert any("split.npz" in line for line in notes)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_local_cluster_of_processes(tmp_path, setup):
    import torch

    from darkflow.dask_cluster import connect
    from darkflow.threads import available_cores

    files, run = setup
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, available_cores() // 2))  # the two workers' threads: bit-equal float32 sums
    try:
        score(run, [files["sm"], files["held"]], one, batch_size=64)
    finally:
        torch.set_num_threads(threads)
    devices: set[str] = set()
    with connect(2, None) as cluster:  # the cluster of --workers 2
        score(run, [files["sm"], files["held"]], many, batch_size=64, part_events=128, devices=devices,
              client=cluster.client)
        worker_threads = cluster.client.run(torch.get_num_threads)
        own_process = cluster.client.run(lambda: __import__("multiprocessing").parent_process() is not None)
    assert list(own_process.values()) == [True, True]  # where worker_model sets threads and heap
    if not torch.cuda.is_available():
        assert devices == {"cpu"}
        assert sorted(worker_threads.values()) == [max(1, available_cores() // 2)] * 2  # cores / workers
        assert_same_scores(one, many)
    else:  # GPU workers: the same scores to float32 round-off
        assert devices and all(d.startswith("cuda:") for d in devices)
        with h5py.File(one) as x, h5py.File(many) as y:
            for name in ("total", "reco", "kl"):
                np.testing.assert_allclose(y["sm"][name][:], x["sm"][name][:], rtol=1e-4, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.h5", "one.h5"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_dead_worker_is_one_line(tmp_path):
    import os

    import dask

    from darkflow.dask_cluster import WorkerLost, connect, result

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), connect(1, None) as cluster:
        future = cluster.client.submit(os._exit, 3, pure=False)
        with pytest.raises(WorkerLost, match="a Dask worker died while scoring events 0 to 10 of x.h5") as err:
            result(future, "scoring events 0 to 10 of x.h5")
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigint_ends_the_local_cluster_and_leaves_nothing(tmp_path, setup):
    import signal
    import subprocess
    import sys

    from conftest import signal_when_ready

    psutil = pytest.importorskip("psutil")
    files, run = setup
    src = write_tree(tmp_path / "big.root", random_nanoaod(np.random.default_rng(5), 60_000))
    big = tmp_path / "big.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(big)), progress=False)
    src.unlink()
    out = tmp_path / "scores.h5"
    before = big.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "darkflow", "score", "--run", str(run), "--data", str(big),
                             "--out", str(out), "--workers", "2"], stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    children: list = []

    def at_work() -> bool:  # the workers run and the scratch folder exists
        children[:] = parent.children(recursive=True)
        return len(children) >= 2 and bool(list(tmp_path.glob(".scores.h5.darkflow-*")))

    err = signal_when_ready(proc, signal.SIGINT, at_work, settle=1.0)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "darkflow score: interrupted by SIGINT; no partial output was left"
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"worker processes survived: {alive}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.h5"]
    assert big.read_bytes() == before
