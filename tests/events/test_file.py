"""EventFile: validated once (every refusal one line), then read by index or block exactly as written.

Files are written here with h5py directly (conftest.write_event_file), so the reader is checked against an
independent writer; expected values come from numpy indexing of the arrays written.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import EVENT_HLF_NAMES, EVENT_PROCESS_NAMES, random_events, write_event_file

from darkflow.errors import DataError, InputError
from darkflow.events import DATASETS, DTYPES, EventFile

FIXED_ROWS = ["jet", "jet", "bjet", "eplus", "met"]
MIXED_ROWS = ["any"] * 5 + ["met"]


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    events = random_events(FIXED_ROWS, 40, typed=False, seed=1)
    return write_event_file(tmp_path_factory.mktemp("fixed") / "fixed.h5", events, FIXED_ROWS, typed=False), events


def _copy(tmp_path: Path, events: dict[str, np.ndarray], rows: list[str] = FIXED_ROWS, typed: bool = False,
          name: str = "bad.h5", **changes: np.ndarray) -> Path:
    return write_event_file(tmp_path / name, {**events, **changes}, rows, typed)


def _refused(path: Path, error: type[Exception], match: str) -> str:
    with pytest.raises(error, match=match) as info:
        EventFile(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_import_is_pure():
    code = ("import sys, darkflow.events; print(','.join(sorted(m for m in sys.modules if m in ('torch', 'h5py') "
            "or m.startswith('darkflow.data_prep'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import darkflow.events imports {out}"


# ---------------------------------------------------------------------- properties and reads


def test_properties(fixed):
    path, events = fixed
    file = EventFile(path)
    assert file.n_events == len(file) == 40
    assert (file.n_rows, file.n_features, file.n_hlf) == (5, 4, 4)
    assert file.rows == FIXED_ROWS and file.features == ["E", "pt", "eta", "phi"]
    assert file.hlf_names == EVENT_HLF_NAMES and file.process_names == EVENT_PROCESS_NAMES
    assert file.label == "sm-test" and file.channel == {"name": "none"} and file.source == {}
    assert file.simulation is None and file.chunk_events == 8 and file.compression is None
    assert file.layout["name"] == "test-fixed" and file.attrs["layout"]["rows"] == FIXED_ROWS
    file.attrs["layout"]["rows"] = []  # a copy: the file's own attributes do not change
    assert file.rows == FIXED_ROWS
    assert "EventFile" in repr(file)


@pytest.mark.parametrize("idx", [
    None,
    slice(None),
    slice(5, 12),
    slice(3, 30, 4),
    slice(38, 100),
    [7, 3, 3, 35, 0, 7],  # unsorted, repeats, sparse: point selection
    [12, 10, 11, 13],  # contiguous: one slice
    [20, 22, 21, 26, 20],  # dense: bounding slice
    np.array([39], dtype=np.int32),
    [],
])
def test_read_matches_written(fixed, idx):
    path, events = fixed
    if idx is None:
        expected_idx = np.arange(40)
    elif isinstance(idx, slice):
        expected_idx = np.arange(40)[idx]
    else:
        expected_idx = np.asarray(idx, dtype=int)
    with EventFile(path) as file:
        got = file.read(idx)
    assert set(got) == set(DATASETS)
    for name in DATASETS:
        assert got[name].dtype == DTYPES[name]
        np.testing.assert_array_equal(got[name], events[name][expected_idx], err_msg=name)


def test_read_fields_and_bad_requests(fixed):
    path, events = fixed
    file = EventFile(path)
    got = file.read([4, 2], fields=("weight", "process"))
    assert set(got) == {"weight", "process"}
    np.testing.assert_array_equal(got["weight"], events["weight"][[4, 2]])
    with pytest.raises(ValueError, match="unknown dataset 'pt'"):
        file.read(None, fields=("pt",))
    with pytest.raises(IndexError, match="event index 40 out of range .* with 40 events"):
        file.read([0, 40])
    with pytest.raises(IndexError, match="event index -1 out of range"):
        file.read([-1])
    with pytest.raises(ValueError, match="boolean mask"):
        file.read(np.ones(40, dtype=bool))
    with pytest.raises(ValueError, match="integers"):
        file.read([0.5, 1.0])


@pytest.mark.parametrize("size", [1, 7, 40, 1000])
def test_blocks_cover_the_file(fixed, size):
    path, events = fixed
    file = EventFile(path)
    starts, parts = [], []
    for where, block in file.blocks(size, fields=("objects", "event_id")):
        np.testing.assert_array_equal(block["event_id"], events["event_id"][where])
        starts.append(where.start)
        parts.append(block["objects"])
    assert starts == list(range(0, 40, size))
    np.testing.assert_array_equal(np.concatenate(parts), events["objects"])
    chosen = np.array([1, 4, 9, 16, 25, 36])
    got = [(where, block["weight"]) for where, block in file.blocks(size, fields=("weight",), indices=chosen)]
    np.testing.assert_array_equal(np.concatenate([w for _, w in got]), events["weight"][chosen])
    assert got[0][0].start == 0 and got[-1][0].stop == len(chosen)
    with pytest.raises(ValueError, match="at least 1"):
        next(file.blocks(0))


def test_pickle_reopens_lazily(fixed):
    path, events = fixed
    file = EventFile(path)
    file.read([3])
    assert file._file is not None
    clone = pickle.loads(pickle.dumps(file))
    assert clone._file is None
    np.testing.assert_array_equal(clone.read([5])["objects"], events["objects"][[5]])
    clone.close()
    with file:
        file.read([1])
    assert file._file is None


def test_check_finite_names_count_and_first(tmp_path, fixed):
    _, events = fixed
    objects, hlf = events["objects"].copy(), events["hlf"].copy()
    objects[5, 1, 2] = np.nan
    hlf[9, 0] = np.inf
    hlf[30, 3] = -np.inf
    path = _copy(tmp_path, events, objects=objects, hlf=hlf)
    file = EventFile(path)  # objects and hlf are not read when opening
    with pytest.raises(DataError, match=r"damaged input file: 1 event\(s\) hold NaN or inf in 'objects' "
                                        r"\(the first at event 5\)"):
        file.check_finite()
    with pytest.raises(DataError, match=r"2 event\(s\) hold NaN or inf in 'hlf' \(the first at event 9\)"):
        file.check_finite(np.array([0, 9, 10, 30]))
    with pytest.raises(DataError, match=r"1 event\(s\) hold NaN or inf in 'hlf' \(the first at event 30\)"):
        file.check_finite(slice(20, 40))
    file.check_finite(np.array([0, 1, 2, 31]))
    file.check_finite(slice(10, 30))


# ---------------------------------------------------------------------- refusals


def test_missing_file_directory_and_fifo(tmp_path):
    _refused(tmp_path / "nope.h5", InputError, "event file not found")
    (tmp_path / "dir.h5").mkdir()
    _refused(tmp_path / "dir.h5", InputError, "is a folder")
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    _refused(fifo, InputError, "not a regular file")


def test_not_hdf5_empty_and_truncated(tmp_path, fixed):
    path, _ = fixed
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    _refused(text, InputError, "not an HDF5 file")
    (tmp_path / "empty.h5").write_bytes(b"")
    _refused(tmp_path / "empty.h5", InputError, "not an HDF5 file")
    data = path.read_bytes()
    for keep in (len(data) // 2, 600):
        cut = tmp_path / f"cut{keep}.h5"
        cut.write_bytes(data[:keep])
        _refused(cut, InputError, "truncated or damaged")


def test_missing_dataset_lists_present(tmp_path, fixed):
    events = dict(fixed[1])
    del events["hlf"]
    path = write_event_file(tmp_path / "nohlf.h5", events, FIXED_ROWS, typed=False)
    _refused(path, InputError, r"missing dataset\(s\) hlf; it holds: event_id, mask, objects, process, weight")


@pytest.mark.parametrize("name, dtype", [("weight", np.float32), ("objects", np.float64), ("process", np.int64),
                                         ("mask", np.uint8), ("event_id", np.float64)])
def test_wrong_dtype(tmp_path, fixed, name, dtype):
    events = fixed[1]
    path = _copy(tmp_path, events, **{name: events[name].astype(dtype)})
    _refused(path, InputError, f"dataset '{name}' has dtype {np.dtype(dtype)}, expected {DTYPES[name]}")


def test_wrong_dimensions(tmp_path, fixed):
    events = fixed[1]
    _refused(_copy(tmp_path, events, weight=events["weight"][:, None]), InputError, r"'weight' has shape \(40, 1\)")


def test_inconsistent_lengths(tmp_path, fixed):
    events = fixed[1]
    _refused(_copy(tmp_path, events, weight=events["weight"][:-1]), InputError,
             r"datasets disagree on the number of events: objects has 40, but weight \(39,\)")
    _refused(_copy(tmp_path, events, name="rows.h5", mask=events["mask"][:, :4]), InputError,
             "'mask' has 4 rows but 'objects' has 5")


def test_missing_layout(tmp_path, fixed):
    path = _copy(tmp_path, fixed[1])
    with h5py.File(path, "a") as file:
        del file.attrs["layout"]
    _refused(path, InputError, "no 'layout' attribute")


@pytest.mark.parametrize("attr, text, match", [
    ("layout", "{rows: [", "attribute 'layout' is not valid JSON"),
    ("process_names", "ttbar", "attribute 'process_names' is not valid JSON"),
    ("hlf_names", '{"a": 1}', "attribute 'hlf_names' must be a JSON list"),
    ("channel", "[1, 2]", "attribute 'channel' must be a JSON dict"),
    ("process_names", "[1, 2, 3]", "attribute 'process_names' must be a JSON list of names"),
    ("layout", '{"features": ["E", "pt", "eta", 4], "rows": ["jet", "jet", "bjet", "eplus", "met"]}',
     "layout features .* do not match the 4 columns of 'objects'"),
])
def test_bad_json_attribute(tmp_path, fixed, attr, text, match):
    path = _copy(tmp_path, fixed[1])
    with h5py.File(path, "a") as file:
        file.attrs[attr] = text
    _refused(path, InputError, match)


def test_layout_mismatch(tmp_path, fixed):
    _refused(write_event_file(tmp_path / "badrows.h5", fixed[1], FIXED_ROWS[:-1], typed=False), InputError,
             "layout has 4 rows but 'objects' has 5")
    _refused(write_event_file(tmp_path / "badtype.h5", fixed[1], ["jet", "jet", "tau", "eplus", "met"], typed=False),
             InputError, "unknown row type")
    path = _copy(tmp_path, fixed[1], name="names.h5")
    with h5py.File(path, "a") as file:
        file.attrs["hlf_names"] = json.dumps(["MET"])
    _refused(path, InputError, "1 hlf_names for 4 columns of 'hlf'")


def test_any_rows_need_type_column(tmp_path):
    events = random_events(MIXED_ROWS, 3, typed=False, seed=5)
    _refused(write_event_file(tmp_path / "notype.h5", events, MIXED_ROWS, typed=False), InputError,
             "no 'type' feature")


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_weights(tmp_path, fixed, value):
    weight = fixed[1]["weight"].copy()
    weight[[17, 3, 25]] = value
    message = _refused(_copy(tmp_path, fixed[1], weight=weight), DataError,
                       r"3 event weight\(s\) are NaN or inf \(the first at event 3\)")
    assert "finite" in message


def test_process_outside_process_names(tmp_path, fixed):
    process = fixed[1]["process"].copy()
    process[[11, 12]] = [3, -1]
    _refused(_copy(tmp_path, fixed[1], process=process), DataError,
             r"2 event\(s\) have a process index outside the 3 process_names \(the first at event 11\)")
