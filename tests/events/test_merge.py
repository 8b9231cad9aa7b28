"""``--shard I/N`` + ``darkflow merge`` give exactly the one-shot file; merge refuses mismatched layouts;
``subset`` writes the chosen events and nothing else."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree

from darkflow.data_prep.prepare import PrepareConfig, _ranges, prepare
from darkflow.errors import InputError
from darkflow.events import EventFile, merge, subset
from darkflow.fileio import leftovers

DATASETS = ("objects", "mask", "hlf", "weight", "event_id", "process")


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    a = write_tree(d / "ttbar.root", random_nanoaod(np.random.default_rng(1), 333))
    data = random_nanoaod(np.random.default_rng(2), 250)
    data["event"] += 10_000
    b = write_tree(d / "wjets.root", data)
    return [str(a), str(b)]


def _same(a, b):
    with h5py.File(a) as x, h5py.File(b) as y:
        for name in DATASETS:
            np.testing.assert_array_equal(x[name][:], y[name][:])
        assert json.loads(x.attrs["process_names"]) == json.loads(y.attrs["process_names"])
        for key in ("n_read", "n_selected"):
            assert int(x.attrs[key]) == int(y.attrs[key])


@pytest.mark.parametrize("n_shards", [1, 3, 7])
def test_shards_merge_to_one_shot(tmp_path, two_files, n_shards):
    whole = tmp_path / "whole.h5"
    prepare(PrepareConfig(inputs=two_files, out=str(whole), channel="chan2b"), progress=False)
    shards = []
    for i in range(n_shards):
        out = tmp_path / f"shard{i}.h5"
        prepare(PrepareConfig(inputs=two_files, out=str(out), channel="chan2b", shard=f"{i}/{n_shards}",
                              chunk_size=40), progress=False)
        shards.append(out)
    merged = tmp_path / "merged.h5"
    merge(shards, merged)
    _same(whole, merged)
    with h5py.File(merged) as h:
        assert json.loads(h.attrs["process_names"]) == ["ttbar", "wjets"]
        assert int(h.attrs["n_read"]) == 583


def test_ranges_cover_every_event_once():
    counts = [5, 0, 17, 3]
    for n in (1, 2, 4, 25, 30):
        covered = []
        for i in range(n):
            offset = 0
            for count, (start, stop) in zip(counts, _ranges(counts, None, (i, n)), strict=True):
                covered += range(offset + start, offset + stop)
                offset += count
        assert covered == list(range(25))
    assert sum(b - a for a, b in _ranges(counts, 10, None)) == 10


def test_merge_remaps_processes_and_refuses_other_layouts(tmp_path, two_files):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    prepare(PrepareConfig(inputs=[two_files[1]], out=str(a)), progress=False)
    prepare(PrepareConfig(inputs=[two_files[0]], out=str(b)), progress=False)
    merged = tmp_path / "m.h5"
    merge([a, b], merged, label="sm")
    with h5py.File(merged) as h, h5py.File(b) as hb:
        names = json.loads(h.attrs["process_names"])
        assert names == ["wjets", "ttbar"] and h.attrs["label"] == "sm"
        proc = h["process"][:]
        assert (proc[:250] == 0).all() and (proc[250:] == 1).all()
        np.testing.assert_array_equal(h["objects"][250:], hb["objects"][:])
    c = tmp_path / "c.h5"
    prepare(PrepareConfig(inputs=[two_files[0]], out=str(c), layout="single_list"), progress=False)
    with pytest.raises(InputError, match="layout differs"):
        merge([a, c], tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()
    assert not list(tmp_path.glob(".*tmp"))


def test_merge_refuses_an_output_that_is_an_input(tmp_path, two_files):
    a = tmp_path / "a.h5"
    prepare(PrepareConfig(inputs=[two_files[0]], out=str(a)), progress=False)
    before = a.read_bytes()
    with pytest.raises(InputError, match="is also an input"):
        merge([a], a)
    assert a.read_bytes() == before and not leftovers(tmp_path)


def test_subset_writes_the_chosen_events(tmp_path, two_files):
    src = tmp_path / "src.h5"
    prepare(PrepareConfig(inputs=two_files, out=str(src)), progress=False)
    chosen = np.array([400, 3, 17, 582, 250])
    out = tmp_path / "part.h5"
    attrs = subset(src, out, chosen, label="part")
    order = np.sort(chosen)
    with h5py.File(src) as x, h5py.File(out) as y:
        for name in DATASETS:
            np.testing.assert_array_equal(y[name][:], x[name][:][order], err_msg=name)
        assert y.attrs["label"] == "part" and int(y.attrs["n_selected"]) == 5 == attrs["n_selected"]
        assert y.attrs["subset_of"] == str(src) and "created" not in y.attrs
        assert json.loads(y.attrs["process_names"]) == json.loads(x.attrs["process_names"])
    assert EventFile(out).n_events == 5
    with pytest.raises(IndexError, match="event index 583 out of range"):
        subset(src, tmp_path / "bad.h5", [0, 583])
    assert not (tmp_path / "bad.h5").exists() and not leftovers(tmp_path)
