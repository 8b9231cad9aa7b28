"""``darkflow prepare`` on a Dask cluster writes the single-process file, dataset for dataset."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree
from test_prepare_csv import random_csv

from darkflow.cli import main
from darkflow.data_prep.dask_prepare import convert_shard, tasks
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import DataError, InputError

distributed = pytest.importorskip("distributed")

DATASETS = ("objects", "mask", "hlf", "weight", "event_id", "process")
VOLATILE = ("created", "label")


@pytest.fixture(scope="module")
def root_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    paths = []
    for i, (name, n) in enumerate((("ttbar", 700), ("wjets", 0), ("qcd", 450))):
        data = random_nanoaod(np.random.default_rng(10 + i), n)
        data["event"] += 10_000 * i
        paths.append(str(write_tree(d / f"{name}.root", data)))
    return paths


def assert_same_file(a, b):
    with h5py.File(a) as x, h5py.File(b) as y:
        for name in DATASETS:
            assert x[name].dtype == y[name].dtype and x[name].chunks == y[name].chunks
            np.testing.assert_array_equal(x[name][:], y[name][:], err_msg=name)
        assert set(x.attrs) == set(y.attrs)
        for key in set(x.attrs) - set(VOLATILE):
            assert str(x.attrs[key]) == str(y.attrs[key]), key


@pytest.mark.parametrize("channel", ["none", "chan2b"])
def test_root_on_cluster_equals_single_process(tmp_path, client, root_files, channel):
    one = tmp_path / "one.h5"
    prepare(PrepareConfig(inputs=root_files, out=str(one), channel=channel), progress=False)
    many = tmp_path / "many.h5"
    # 97-event tasks: many tasks per file, ending mid-file, finishing out of order on two workers
    result = prepare(PrepareConfig(inputs=root_files, out=str(many), channel=channel, chunk_size=97),
                     progress=False, client=client)
    assert result.n_read == 1150
    assert_same_file(one, many)


def test_csv_processes_and_skipped_lines_on_cluster(tmp_path, client):
    a = random_csv(tmp_path / "a.csv", 400, seed=1, processes=("zz", "ttbar", "wjets"))
    b = random_csv(tmp_path / "b.csv", 300, seed=2, processes=("ww", "ttbar"))
    lines = a.read_text().splitlines()
    lines[123] = "1;broken line"
    a.write_text("\n".join(lines) + "\n")
    options = dict(inputs=[str(a), str(b)], on_error="skip", max_events=650)
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    prepare(PrepareConfig(out=str(one), **options), progress=False)
    result = prepare(PrepareConfig(out=str(many), chunk_size=64, **options), progress=False, client=client)
    assert result.n_skipped == 1 and result.process_names == ["zz", "ttbar", "wjets", "ww"]
    assert_same_file(one, many)


def test_cli_with_a_scheduler_address(tmp_path, client, root_files, capsys):
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    assert main(["prepare", *root_files, "--out", str(one), "-q"]) == 0
    assert main(["prepare", *root_files, "--out", str(many), "-q", "--chunk-size", "300",
                 "--dask-scheduler", client.scheduler.address]) == 0
    assert "1150 of 1150 events selected" in capsys.readouterr().out
    assert_same_file(one, many)


def test_worker_errors_and_bad_addresses_are_one_line(tmp_path, client, capsys):
    bad = write_tree(tmp_path / "nan.root", random_nanoaod(np.random.default_rng(3), 300, nan_event=250))
    out = tmp_path / "out.h5"
    with pytest.raises(DataError, match="NaN or inf in MET"):
        prepare(PrepareConfig(inputs=[str(bad)], out=str(out), chunk_size=50), progress=False, client=client)
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    with pytest.raises(InputError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        prepare(PrepareConfig(inputs=[str(bad)], out=str(out), dask_scheduler="tcp://127.0.0.1:9",
                              dask_timeout=0.5), progress=False)
    assert main(["prepare", str(bad), "--out", str(out), "--dask-scheduler", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a scheduler address" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit, match="2"):
        main(["prepare", str(bad), "--out", str(out), "--workers", "2", "--dask-scheduler", "a:1"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["prepare", str(bad), "--out", str(out), "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err
    assert not out.exists()


def test_a_task_writes_its_shard_and_returns_only_a_summary(tmp_path, root_files):
    from pathlib import Path

    from darkflow.data_prep import builtin
    from darkflow.data_prep.channels import load_channel
    from darkflow.data_prep.convert import ConversionSpec, convert_range
    from darkflow.data_prep.layout import load_layout
    from darkflow.data_prep.objects import load_objects
    from darkflow.data_prep.prepare import resolve_source
    from darkflow.events import EventFile

    _, schema = resolve_source("auto", [Path(p) for p in root_files])
    spec = ConversionSpec(load_layout(builtin.resolve("layouts", "default")),
                          load_objects(builtin.resolve("objects", "darkmachines")),
                          load_channel(builtin.resolve("channels", "chan2b")), schema, 100, "fail", None)
    expected = convert_range(spec, root_files[2], 100, 300, 700)
    summary = convert_shard(spec, root_files[2], 100, 300, 700, str(tmp_path / "part.h5"))
    assert not any(isinstance(v, np.ndarray) for v in summary.values())  # no event data goes back to the client
    assert summary["shard"] == str(tmp_path / "part.h5") and summary["n_read"] == 200
    assert summary["n_selected"] == len(expected["objects"]) > 0
    assert summary["process_names"] == expected["process_names"] == ["qcd"]
    with EventFile(tmp_path / "part.h5") as shard:
        got = shard.read(slice(None))
        assert shard.process_names == ["qcd"]
    for name in DATASETS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    empty = convert_shard(spec, root_files[2], 5, 5, 0, str(tmp_path / "none.h5"))
    assert empty["shard"] is None and empty["n_selected"] == 0 and not (tmp_path / "none.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.h5"]


def test_tasks_are_aligned_on_chunks():
    class R:
        def __init__(self, path, start, stop, offset):
            self.path, self.start, self.stop, self.index_offset = path, start, stop, offset

    got = list(tasks([R("a", 0, 10, 0), R("b", 3, 3, 10), R("c", 2, 9, 20)], 4))
    assert got == [("a", 0, 4, 0), ("a", 4, 8, 0), ("a", 8, 10, 0), ("c", 2, 6, 20), ("c", 6, 9, 20)]


@pytest.mark.slow
def test_local_cluster_of_processes(tmp_path, root_files):
    one, many = tmp_path / "one.h5", tmp_path / "many.h5"
    prepare(PrepareConfig(inputs=root_files, out=str(one), channel="chan2b"), progress=False)
    result = prepare(PrepareConfig(inputs=root_files, out=str(many), channel="chan2b", chunk_size=200, workers=2),
                     progress=False)
    assert result.n_read == 1150
    assert_same_file(one, many)
    with h5py.File(many) as h:
        assert json.loads(h.attrs["process_names"]) == ["ttbar", "qcd"]  # the empty wjets file adds no process


def _imported_modules(module: str) -> set[str]:
    """Every module a darkflow module imports, at the top or inside functions (from its source)."""
    import ast
    import importlib.util
    from pathlib import Path

    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_import_cycle_between_prepare_and_the_dask_path():
    assert "darkflow.data_prep.prepare" not in _imported_modules("darkflow.data_prep.dask_prepare")
    shared = _imported_modules("darkflow.data_prep.convert")
    assert not shared & {"darkflow.data_prep.prepare", "darkflow.data_prep.dask_prepare"}
    assert "darkflow.data_prep.convert" in _imported_modules("darkflow.data_prep.dask_prepare")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigterm_ends_the_local_cluster_and_leaves_nothing(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    src = write_tree(tmp_path / "big.root", random_nanoaod(np.random.default_rng(0), 60_000))
    out = tmp_path / "x.h5"
    before = src.read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "darkflow", "prepare", str(src), "--out", str(out),
                             "--workers", "2", "--chunk-size", "500"], stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    children: list = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # the workers run and the output is being written
        children = parent.children(recursive=True)
        if len(children) >= 2 and list(tmp_path.glob(".x.h5.darkflow-*")):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "prepare ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == ("darkflow prepare: interrupted by SIGTERM; "
                                            "no partial output was left")
    assert "Traceback" not in err and len([line for line in err.splitlines() if "darkflow prepare:" in line]) == 1
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"worker processes survived: {alive}"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["big.root"]
    assert src.read_bytes() == before
