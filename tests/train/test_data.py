"""EventBatches reads the split's batches through EventFile, in memory or streamed, exactly as written."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_events, write_event_file

from darkflow.train.data import FIELDS, EventBatches

ROWS = ["jet", "jet", "bjet", "eplus", "met"]


@pytest.mark.parametrize("in_memory", [True, False])
def test_batches_equal_the_written_events(tmp_path, in_memory):
    events = random_events(ROWS, 60, typed=False, seed=7)
    path = write_event_file(tmp_path / "e.h5", events, ROWS, typed=False)
    split = np.array([50, 2, 3, 4, 17, 40, 41])
    data = EventBatches(path, split, in_memory=in_memory)
    assert data.in_memory == in_memory and len(data) == 7
    rows = np.sort(split)
    for positions in ([0, 1, 2], [6, 3], [5]):
        batch = data[positions]
        for name in FIELDS:
            np.testing.assert_array_equal(batch[name].numpy(), events[name][rows[np.sort(positions)]], err_msg=name)
