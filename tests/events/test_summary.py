"""``summarize`` (what ``darkflow inspect`` prints) against counts computed here with numpy."""

from __future__ import annotations

import numpy as np
from conftest import EVENT_PROCESS_NAMES, random_events, write_event_file

from darkflow.events import EventFile, summarize

ROWS = ["jet", "jet", "bjet", "eplus", "met"]


def test_summary_counts_processes_weights_and_ranges(tmp_path):
    events = random_events(ROWS, 300, typed=False, seed=4)
    path = write_event_file(tmp_path / "s.h5", events, ROWS, typed=False)
    text = summarize(path)
    assert text == EventFile(path).summary()
    assert "label: sm-test   events: 300" in text and "5 rows x 4 features (E, pt, eta, phi)" in text
    for i, name in enumerate(EVENT_PROCESS_NAMES):
        sel = events["process"] == i
        assert f"{name:<32s} events {int(sel.sum()):>10d}   sum of weights {events['weight'][sel].sum():.6g}" in text
    real = events["objects"][events["mask"] & (np.array(ROWS) != "met")]
    assert f"objects (real slots, MET row excluded, {len(real)} in all)" in text
    assert f"pt  mean {real[:, 1].mean():10.4g}   min {real[:, 1].min():10.4g}   max {real[:, 1].max():10.4g}" in text
    assert f"mean occupied slots per event: {events['mask'].sum() / 300:.2f}" in text
    assert "created" not in text
