"""``prepare`` checks every option and the output path before it reads any input.

The input here is junk that fails as soon as it is read ("neither a ROOT file nor a Dark Machines CSV"), so a
check that ran after reading would report the junk instead of the bad option.
"""

from __future__ import annotations

import pytest

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.errors import ConfigError, DarkFlowError, InputError
from darkflow.fileio import leftovers


@pytest.fixture()
def junk(tmp_path):
    path = tmp_path / "junk.root"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    return path


def test_junk_is_reported_when_the_options_are_good(junk, tmp_path):
    with pytest.raises(InputError, match="neither a ROOT file nor a Dark Machines CSV"):
        prepare(PrepareConfig(inputs=[str(junk)], out=str(tmp_path / "x.h5")), progress=False)


@pytest.mark.parametrize("change, error, match", [
    ({"out": "{tmp}/missing/x.h5"}, InputError, "output folder does not exist"),
    ({"out": "{tmp}"}, InputError, "is a folder; give a file name"),
    ({"out": "{junk}"}, InputError, "is also an input"),
    ({"layout": "nope"}, ConfigError, "unknown layout 'nope'"),
    ({"channel": "chan9"}, ConfigError, "unknown channel 'chan9'"),
    ({"objects": "nope"}, ConfigError, "unknown object"),
    ({"dask_scheduler": "nowhere"}, InputError, "is not a scheduler address"),
    ({"source": "nope"}, ConfigError, "unknown source 'nope'"),
])
def test_bad_option_is_reported_before_the_input_is_read(junk, tmp_path, change, error, match):
    options = {"inputs": [str(junk)], "out": str(tmp_path / "x.h5")}
    options |= {k: v.format(tmp=tmp_path, junk=junk) for k, v in change.items()}
    before = junk.read_bytes()
    with pytest.raises(error, match=match) as info:
        prepare(PrepareConfig(**options), progress=False)
    assert "\n" not in str(info.value)
    assert junk.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.root"] and not leftovers(tmp_path)


def test_bad_source_date_epoch_is_reported_first(junk, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(DarkFlowError, match="SOURCE_DATE_EPOCH"):
        prepare(PrepareConfig(inputs=[str(junk)], out=str(tmp_path / "x.h5")), progress=False)
