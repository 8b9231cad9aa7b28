"""EventFileWriter: all or nothing, nothing that depends on the time of writing; prepare is byte-identical."""

from __future__ import annotations

import datetime as dt
import hashlib

import h5py
import numpy as np
import pytest
from conftest import random_events

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError, InputError
from darkflow.events import CHUNK_EVENTS, DATASETS, DTYPES, EventFile, EventFileWriter
from darkflow.fileio import leftovers

ROWS = ["jet", "jet", "bjet", "eplus", "met"]
LAYOUT = {"name": "t", "features": ["E", "pt", "eta", "phi"], "rows": ROWS}


def _write(path, events, **attrs):
    with EventFileWriter(path, 5, 4, 4) as writer:
        writer.append(**events)
        return writer.close({"layout": LAYOUT, "hlf_names": ["a", "b", "c", "d"],
                             "process_names": ["x", "y", "z"], **attrs})


def test_written_file_follows_the_schema(tmp_path):
    events = random_events(ROWS, 1500, typed=False, seed=0)
    path = _write(tmp_path / "e.h5", {k: v[:700] for k, v in events.items()}, label="sm")
    with h5py.File(path) as h:
        for name in DATASETS:
            assert h[name].dtype == DTYPES[name] and h[name].chunks[0] == CHUNK_EVENTS
            np.testing.assert_array_equal(h[name][:], events[name][:700])
        assert "created" not in h.attrs and h.attrs["label"] == "sm"
    file = EventFile(path)
    assert file.rows == ROWS and file.process_names == ["x", "y", "z"]
    assert not leftovers(tmp_path)


def test_no_timestamp_in_the_file(tmp_path, monkeypatch):
    """HDF5 stores object modification times (seconds) unless told not to: two writes of the same events
    more than a second apart give the same bytes."""
    import time

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    events = random_events(ROWS, 50, typed=False, seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(tmp_path / "a" / "e.h5", events)
    time.sleep(1.1)
    second = _write(tmp_path / "b" / "e.h5", events)
    assert _digest(first) == _digest(second)


def test_failure_or_interrupt_leaves_no_file_and_the_old_one_unchanged(tmp_path):
    events = random_events(ROWS, 20, typed=False, seed=1)
    out = tmp_path / "e.h5"
    out.write_bytes(b"the previous output")
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), EventFileWriter(out, 5, 4, 4) as writer:
            writer.append(**events)
            assert len(leftovers(tmp_path)) == 1
            raise error
        assert out.read_bytes() == b"the previous output" and not leftovers(tmp_path)
    with pytest.raises(InputError, match="is a folder"):
        EventFileWriter(tmp_path, 5, 4, 4)
    with pytest.raises(InputError, match="is also an input"):
        EventFileWriter(out, 5, 4, 4, inputs=[out])
    with pytest.raises(InputError, match="does not exist"):
        EventFileWriter(tmp_path / "no" / "e.h5", 5, 4, 4)
    assert not leftovers(tmp_path)


def test_created_comes_from_source_date_epoch(tmp_path, monkeypatch):
    events = random_events(ROWS, 5, typed=False, seed=2)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    path = _write(tmp_path / "e.h5", events, created="ignored")
    expected = dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc).isoformat()
    assert EventFile(path).attrs["created"] == expected == "2023-11-14T22:13:20+00:00"
    for bad in ("tomorrow", "-5", "1.5"):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", bad)
        with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH"):
            EventFileWriter(tmp_path / "f.h5", 5, 4, 4)
    assert not leftovers(tmp_path)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("epoch", [None, "1700000000"])
def test_prepare_twice_is_byte_identical(real_nanoaod, tmp_path, monkeypatch, epoch):
    if epoch is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    outs = []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        out = tmp_path / run / "ttbar.h5"
        prepare(PrepareConfig(inputs=[str(real_nanoaod)], out=str(out), source="nanoaod_opendata2015"),
                progress=False)
        outs.append(out)
    assert _digest(outs[0]) == _digest(outs[1])
    attrs = EventFile(outs[0]).attrs
    assert ("created" in attrs) == (epoch is not None)
