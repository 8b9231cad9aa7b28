"""Inputs that are suspicious but usable: accepted (exit 0 is fine), with a warning that gives the evidence.

A Dark Machines CSV written in GeV instead of MeV: after the MeV -> GeV conversion every object falls below the
object thresholds. The same events in MeV get no such warning.
"""

from __future__ import annotations

import pytest
from harness import Scene, dark_machines_lines, differences, run_inprocess, snapshot, world


@pytest.fixture
def world_root(tmp_path_factory, capfd):
    return world(tmp_path_factory, capfd)


def _prepare_csv(scene: Scene, scale: float, capfd):
    src = scene.write("events.csv", "\n".join(dark_machines_lines(40, seed=9, scale=scale)) + "\n")
    before = snapshot(scene.root)
    outcome = run_inprocess(["prepare", src, "--out", scene.out("dm.h5"), "-q"], capfd)
    return outcome, differences(before, snapshot(scene.root))


def test_csv_in_gev_gets_a_warning_with_evidence(world_root, tmp_path, capfd, monkeypatch):
    scene = Scene(world_root, tmp_path / "case")
    monkeypatch.chdir(scene.root)
    outcome, changed = _prepare_csv(scene, 1.0, capfd)
    assert "Traceback" not in outcome.err and "internal error" not in outcome.err, outcome.err
    warnings = [line for line in outcome.err.splitlines() if "warning" in line.lower()]
    assert any("mev" in line.lower() and "gev" in line.lower() for line in warnings), (
        f"no warning that the values look like GeV where MeV is expected (exit {outcome.code}):\n{outcome.err}")
    if outcome.code == 0:
        assert changed == ["new out/dm.h5"], changed
    else:
        assert len(outcome.err.strip().splitlines()) == 1 and not changed, (outcome.err, changed)


def test_csv_in_mev_gets_no_unit_warning(world_root, tmp_path, capfd, monkeypatch):
    scene = Scene(world_root, tmp_path / "case")
    monkeypatch.chdir(scene.root)
    outcome, changed = _prepare_csv(scene, 1000.0, capfd)
    assert outcome.code == 0, outcome.err
    assert "mev" not in outcome.err.lower(), outcome.err
    assert changed == ["new out/dm.h5"], changed
