"""Outputs appear atomically with the permissions of an ordinary new file (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat

import numpy as np
from conftest import random_nanoaod, write_tree

from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.fileio import default_mode, write_text_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_are_readable_like_ordinary_files(tmp_path):
    old = os.umask(0o022)
    try:
        assert default_mode() == 0o644 and default_mode(directory=True) == 0o755
        text = write_text_atomic(tmp_path / "a.txt", "hello")
        assert text.read_text() == "hello" and mode(text) == 0o644
        src = write_tree(tmp_path / "r.root", random_nanoaod(np.random.default_rng(0), 20))
        out = prepare(PrepareConfig(inputs=[str(src)], out=str(tmp_path / "r.h5")), progress=False).out
        assert mode(out) == 0o644
        assert not list(tmp_path.glob(".*tmp"))
    finally:
        os.umask(old)


def test_scratch_folder_is_removed_however_the_block_ends(tmp_path):
    import pytest

    from darkflow.fileio import TMP_MARK, leftovers, scratch_folder

    with scratch_folder(tmp_path / "out.h5") as scratch:
        assert scratch.is_dir() and scratch.parent == tmp_path and TMP_MARK in scratch.name
        (scratch / "part.h5").write_bytes(b"x")
    assert leftovers(tmp_path) == []
    with pytest.raises(KeyError), scratch_folder(tmp_path / "out.h5") as scratch:
        (scratch / "sub").mkdir()
        (scratch / "sub" / "part.h5").write_bytes(b"x")
        raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []
