"""Tests of darkflow.train.dataset (EventDataset on darkflow.events.EventFile) against HDF5 event files written
with h5py (conftest.write_event_file). The file checks themselves are tested in tests/events/test_file.py."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EVENT_HLF_NAMES, EVENT_PROCESS_NAMES, random_events, write_event_file
from torch.utils.data import DataLoader, Subset

from darkflow.errors import DataError, InputError
from darkflow.events import TYPE_CODES, EventFile
from darkflow.train.dataset import NODE_TYPES, EventDataset, import_torch_geometric

FIXED_ROWS = ["jet", "jet", "bjet", "eplus", "met"]
MIXED_ROWS = ["any"] * 5 + ["met"]
HLF_NAMES = EVENT_HLF_NAMES
PROCESS_NAMES = EVENT_PROCESS_NAMES
_random_events = random_events
_write = write_event_file


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    events = _random_events(FIXED_ROWS, 40, typed=False, seed=1)
    path = _write(tmp_path_factory.mktemp("fixed") / "fixed.h5", events, FIXED_ROWS, typed=False)
    return path, events


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    events = _random_events(MIXED_ROWS, 30, typed=True, seed=2)
    path = _write(tmp_path_factory.mktemp("mixed") / "mixed.h5", events, MIXED_ROWS, typed=True)
    return path, events


def _check_sample(sample: dict[str, torch.Tensor], events: dict[str, np.ndarray], k: int) -> None:
    """One array-view sample equals event ``k`` of the arrays written, with the documented dtypes."""
    assert sample["objects"].dtype == torch.float32
    assert sample["mask"].dtype == torch.bool
    assert sample["hlf"].dtype == torch.float32
    assert sample["weight"].dtype == torch.float64 and sample["weight"].shape == ()
    assert sample["event_id"].dtype == torch.int64 and sample["event_id"].shape == ()
    assert sample["process"].dtype == torch.int64 and sample["process"].shape == ()
    np.testing.assert_array_equal(sample["objects"].numpy(), events["objects"][k])
    np.testing.assert_array_equal(sample["mask"].numpy(), events["mask"][k])
    np.testing.assert_array_equal(sample["hlf"].numpy(), events["hlf"][k])
    assert sample["weight"].item() == events["weight"][k]
    assert sample["event_id"].item() == events["event_id"][k]
    assert sample["process"].item() == events["process"][k]


# ---------------------------------------------------------------------- array view


def test_properties(fixed, mixed):
    path, events = fixed
    ds = EventDataset(path)
    assert len(ds) == 40 and ds.n_events == 40
    assert ds.n_rows == 5 and ds.n_features == 4 and ds.n_hlf == 4
    assert ds.features == ["E", "pt", "eta", "phi"]
    assert ds.chunk_events == 8
    assert ds.rows == FIXED_ROWS and ds.layout["rows"] == FIXED_ROWS
    assert ds.hlf_names == HLF_NAMES and ds.process_names == PROCESS_NAMES and ds.label == "sm-test"
    assert ds.node_features == ["E", "pt", "eta", "phi"] + [f"is_{name}" for name in NODE_TYPES]
    ds_mixed = EventDataset(mixed[0])
    assert ds_mixed.features[-1] == "type" and ds_mixed.n_features == 5
    assert ds_mixed.node_features[:4] == ["E", "pt", "eta", "phi"]
    assert "EventDataset" in repr(ds)


@pytest.mark.parametrize("which", ["fixed", "mixed"])
def test_getitem_matches_written_arrays(which, request):
    path, events = request.getfixturevalue(which)
    ds = EventDataset(path)
    for k in range(len(ds)):
        _check_sample(ds[k], events, k)
    _check_sample(ds[-1], events, len(ds) - 1)
    _check_sample(ds[np.int64(3)], events, 3)


def test_subset_indices(fixed):
    path, events = fixed
    indices = np.array([5, 1, 30, 1, 39])
    ds = EventDataset(path, indices=indices)
    assert len(ds) == 5
    for position, k in enumerate(indices):
        _check_sample(ds[position], events, int(k))
    np.testing.assert_array_equal(ds.indices, indices)
    assert len(EventDataset(path, indices=[])) == 0
    assert len(EventDataset(path, indices=range(10, 20))) == 10


@pytest.mark.parametrize(
    "request_idx",
    [
        [7, 3, 3, 35, 0, 7],  # unsorted, repeats, sparse: point selection
        [12, 10, 11, 13],  # contiguous, unsorted: slice read
        [20, 22, 21, 26, 20],  # dense: bounding slice
        [4],
        list(range(40)),
    ],
)
def test_getitems_restores_order(fixed, request_idx):
    path, events = fixed
    ds = EventDataset(path)
    samples = ds.__getitems__(request_idx)
    assert len(samples) == len(request_idx)
    for sample, k in zip(samples, request_idx, strict=True):
        _check_sample(sample, events, k)
    assert ds.__getitems__([]) == []


def test_getitems_through_subset_indices(fixed):
    path, events = fixed
    indices = np.array([39, 2, 17, 8, 9, 10])
    ds = EventDataset(path, indices=indices)
    samples = ds.__getitems__([5, 0, 0, 3, 1])
    for sample, position in zip(samples, [5, 0, 0, 3, 1], strict=True):
        _check_sample(sample, events, int(indices[position]))
    # torch's Subset forwards batches to __getitems__ as well.
    subset = Subset(ds, [1, 2])
    for sample, position in zip(subset.__getitems__([1, 0]), [2, 1], strict=True):
        _check_sample(sample, events, int(indices[position]))


def test_dataloader_batches(fixed):
    path, events = fixed
    ds = EventDataset(path, indices=np.arange(3, 40))
    loader = DataLoader(ds, batch_size=8, shuffle=False)
    batches = list(loader)
    assert len(batches) == 5
    first = batches[0]
    assert first["objects"].shape == (8, 5, 4) and first["objects"].dtype == torch.float32
    assert first["mask"].shape == (8, 5) and first["mask"].dtype == torch.bool
    assert first["hlf"].shape == (8, 4)
    assert first["weight"].shape == (8,) and first["weight"].dtype == torch.float64
    assert first["event_id"].dtype == torch.int64 and first["process"].dtype == torch.int64
    objects = torch.cat([b["objects"] for b in batches]).numpy()
    np.testing.assert_array_equal(objects, events["objects"][3:])
    event_id = torch.cat([b["event_id"] for b in batches]).numpy()
    np.testing.assert_array_equal(event_id, events["event_id"][3:])


def test_dataloader_shuffle_covers_every_event(fixed):
    path, events = fixed
    loader = DataLoader(
        EventDataset(path), batch_size=7, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    seen = []
    for batch in loader:
        for b, eid in enumerate(batch["event_id"].tolist()):
            k = int(np.flatnonzero(events["event_id"] == eid)[0])
            np.testing.assert_array_equal(batch["objects"][b].numpy(), events["objects"][k])
            assert batch["weight"][b].item() == events["weight"][k]
            seen.append(k)
    assert sorted(seen) == list(range(40))


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_dataloader_workers(fixed, context):
    path, events = fixed
    ds = EventDataset(path, indices=np.arange(40)[::-1].copy())
    ds[0]  # open the file in the parent first: workers must reopen, not share the handle
    loader = DataLoader(ds, batch_size=6, num_workers=2, multiprocessing_context=context)
    objects = torch.cat([batch["objects"] for batch in loader]).numpy()
    np.testing.assert_array_equal(objects, events["objects"][::-1])
    ds.close()


def test_pickle_drops_handle(fixed):
    path, events = fixed
    ds = EventDataset(path, indices=[4, 9])
    _check_sample(ds[0], events, 4)
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    _check_sample(clone[1], events, 9)
    clone.close()
    with ds:
        _check_sample(ds[1], events, 9)
    assert ds._file is None


# ---------------------------------------------------------------------- graph view


def _expected_codes(rows: list[str], objects: np.ndarray, mask: np.ndarray) -> list[int]:
    """Node type codes computed independently: row type, else the type column."""
    return [
        int(objects[j, 4]) if rows[j] == "any" else TYPE_CODES[rows[j]] for j in range(len(rows)) if mask[j]
    ]


@pytest.mark.parametrize("which, rows", [("fixed", FIXED_ROWS), ("mixed", MIXED_ROWS)])
def test_graph_view(which, rows, request):
    path, events = request.getfixturevalue(which)
    ds = EventDataset(path, view="graph")
    for k in range(len(ds)):
        graph = ds[k]
        mask = events["mask"][k]
        n = int(mask.sum())
        assert graph.num_nodes == n
        assert graph.x.shape == (n, 4 + 8) and graph.x.dtype == torch.float32
        np.testing.assert_array_equal(graph.x[:, :4].numpy(), events["objects"][k][mask][:, :4])
        one_hot = graph.x[:, 4:].numpy()
        assert np.all(one_hot.sum(axis=1) == 1)
        codes = _expected_codes(rows, events["objects"][k], mask)
        assert [NODE_TYPES[c] for c in one_hot.argmax(axis=1)] == [
            next(name for name, code in TYPE_CODES.items() if code == c) for c in codes
        ]
        assert graph.node_type.tolist() == codes
        assert graph.slot.tolist() == np.flatnonzero(mask).tolist()
        assert one_hot[-1, NODE_TYPES.index("met")] == 1  # the MET row is last and always real
        edge_index = graph.edge_index
        assert edge_index.dtype == torch.int64 and edge_index.shape == (2, n * (n - 1))
        assert not bool((edge_index[0] == edge_index[1]).any())
        pairs = set(map(tuple, edge_index.t().tolist()))
        assert pairs == {(a, b) for a in range(n) for b in range(n) if a != b}
        assert graph.weight.shape == (1,) and graph.weight.dtype == torch.float64
        assert graph.weight.item() == events["weight"][k]
        assert graph.event_id.tolist() == [events["event_id"][k]]
        assert graph.process.tolist() == [events["process"][k]] and graph.process.dtype == torch.int64
        np.testing.assert_array_equal(graph.hlf.numpy(), events["hlf"][k][None])


def test_graph_getitems_order(mixed):
    path, events = mixed
    ds = EventDataset(path, view="graph")
    request_idx = [9, 2, 2, 28]
    graphs = ds.__getitems__(request_idx)
    assert [g.event_id.item() for g in graphs] == [int(events["event_id"][k]) for k in request_idx]


def test_graph_single_node_and_met_only(tmp_path):
    events = _random_events(FIXED_ROWS, 3, typed=False, seed=3)
    events["mask"][0] = [False, False, False, False, True]  # MET only: one node, no edges
    events["objects"][0, :4] = 0.0
    path = _write(tmp_path / "sparse.h5", events, FIXED_ROWS, typed=False)
    graph = EventDataset(path, view="graph")[0]
    assert graph.num_nodes == 1 and graph.edge_index.shape == (2, 0)
    assert graph.x[0, 4 + NODE_TYPES.index("met")] == 1


def test_graph_dataloader_batching(mixed):
    GraphLoader = import_torch_geometric().loader.DataLoader

    path, events = mixed
    ds = EventDataset(path, indices=np.arange(12), view="graph")
    batches = list(GraphLoader(ds, batch_size=5, shuffle=False))
    assert [b.num_graphs for b in batches] == [5, 5, 2]
    batch = batches[0]
    sizes = events["mask"][:5].sum(axis=1)
    assert batch.num_nodes == int(sizes.sum())
    assert batch.x.shape == (int(sizes.sum()), 12)
    assert batch.edge_index.shape[1] == int((sizes * (sizes - 1)).sum())
    assert batch.weight.shape == (5,) and batch.event_id.tolist() == events["event_id"][:5].tolist()
    assert batch.hlf.shape == (5, 4)
    np.testing.assert_array_equal(torch.bincount(batch.batch).numpy(), sizes)
    # edges stay within their graph
    assert bool((batch.batch[batch.edge_index[0]] == batch.batch[batch.edge_index[1]]).all())


def test_graph_bad_type_code(tmp_path):
    events = _random_events(MIXED_ROWS, 4, typed=True, seed=4)
    events["mask"][2, 0] = True
    events["objects"][2, 0, 4] = 0  # a real object with the padding code
    path = _write(tmp_path / "badcode.h5", events, MIXED_ROWS, typed=True)
    ds = EventDataset(path, view="graph")
    ds[0]
    with pytest.raises(DataError, match="type code"):
        ds[2]


# ---------------------------------------------------------------------- errors


def test_unknown_view(fixed):
    with pytest.raises(InputError, match="unknown dataset view 'image'; valid views: array, graph"):
        EventDataset(fixed[0], view="image")  # type: ignore[arg-type]


def test_index_out_of_range(fixed):
    path, _ = fixed
    with pytest.raises(IndexError, match="event index 40 out of range"):
        EventDataset(path, indices=[0, 40])
    with pytest.raises(IndexError, match="out of range"):
        EventDataset(path, indices=[-1])
    ds = EventDataset(path, indices=[1, 2, 3])
    with pytest.raises(IndexError, match="index 3 out of range for a dataset of 3 events"):
        ds[3]
    with pytest.raises(IndexError):
        ds[-4]
    with pytest.raises(IndexError):
        ds.__getitems__([0, 5])
    with pytest.raises(ValueError, match="integers"):
        EventDataset(path, indices=[0.5, 1.0])
    # plain iteration stops at the end: IndexError is the sequence protocol's signal
    assert [int(sample["event_id"]) for sample in ds] == [1007, 1014, 1021]


def test_errors_are_one_line(tmp_path, fixed):
    events = dict(fixed[1])
    del events["mask"]
    path = _write(tmp_path / "nomask.h5", events, FIXED_ROWS, typed=False)
    for bad in (tmp_path / "nope.h5", path):
        with pytest.raises(InputError) as info:
            EventDataset(bad)
        assert "\n" not in str(info.value)


def test_built_on_an_open_event_file(fixed):
    path, events = fixed
    file = EventFile(path)
    ds = EventDataset(file, indices=[3, 1])
    assert ds.events is file and ds.label == file.label == "sm-test"
    _check_sample(ds[0], events, 3)
    _check_sample(ds[1], events, 1)
