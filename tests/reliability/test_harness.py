"""The corpus' harness finds what it is meant to find, and its hostile inputs are real threats.

A successful command is judged as not failing and its output is seen; a clean failure passes; the pickled
``model.pt`` and the ``!!python`` YAML tag of the corpus make a folder when loaded unsafely (so the corpus
would see them run); the billion-laughs YAML is a few hundred bytes.
"""

from __future__ import annotations

import os

import pytest
import yaml
from harness import Payload, Scene, alias_bomb_text, differences, judge, run_inprocess, snapshot, world


@pytest.fixture
def world_root(tmp_path_factory, capfd):
    return world(tmp_path_factory, capfd)


def test_a_successful_command_is_not_a_clean_failure(world_root, tmp_path, capfd, monkeypatch):
    scene = Scene(world_root, tmp_path / "case")
    monkeypatch.chdir(scene.root)
    before = snapshot(scene.root)
    outcome = run_inprocess(["prepare", scene.sm_root, "--out", scene.out("ok.h5"), "-q"], capfd)
    after = snapshot(scene.root)
    assert outcome.code == 0 and differences(before, after) == ["new out/ok.h5"]
    problems = judge(outcome, before, after)
    assert "exit status 0" in problems and "left or changed: new out/ok.h5" in problems


def test_a_clean_failure_passes(world_root, tmp_path, capfd, monkeypatch):
    scene = Scene(world_root, tmp_path / "case")
    monkeypatch.chdir(scene.root)
    before = snapshot(scene.root)
    outcome = run_inprocess(["prepare", scene.sm_root, "--out", scene.out("x.h5"), "--chunk-size", "0", "-q"], capfd)
    assert judge(outcome, before, snapshot(scene.root), ("chunk_size",)) == []


def test_a_changed_input_is_seen(tmp_path):
    (tmp_path / "a.h5").write_bytes(b"12345")
    before = snapshot(tmp_path)
    (tmp_path / "a.h5").write_bytes(b"12346")
    assert differences(before, snapshot(tmp_path)) == ["changed a.h5"]


def test_the_hostile_payloads_would_run_if_loaded_unsafely(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": {}, "metadata": Payload()}, tmp_path / "model.pt")
    torch.load(tmp_path / "model.pt", weights_only=False)
    assert (tmp_path / "pwned").is_dir()
    os.rmdir(tmp_path / "pwned")
    yaml.unsafe_load("label: !!python/object/apply:os.mkdir [pwned]\n")
    assert (tmp_path / "pwned").is_dir()


def test_the_billion_laughs_is_small():
    text = alias_bomb_text(9)
    assert len(text.encode()) < 700 and text.count("*") == 80
    assert yaml.safe_load(text)["l8"][0][0][0][0][0][0][0][0][0] == "lol"  # 10**9 leaves, shared


def test_a_command_that_does_not_stop_is_stopped(world_root, tmp_path, capfd, monkeypatch):
    scene = Scene(world_root, tmp_path / "case")
    monkeypatch.chdir(scene.root)
    outcome = run_inprocess(["generate", "--process", "ttbar", "--events", "100000", "--out", scene.out("gen"),
                             "-q"], capfd, timeout=3.0)
    assert outcome.code is None and "no exit within 3 s" in outcome.err
    assert judge(outcome, {}, {})[0] == "hangs"
