"""Inference of a run saved before the inference rewrite (issue 16): the same anomaly maps to float32 round-off.

``data/saved_run/cflow.pt`` was trained with the code of commit 38c20d5 (built-in encoder, two scales,
cflow-coupling decoders, no Gaussian whitening), and ``expected.h5`` holds the test images and the maps and
scores that code computed (one image at a time per batch of 4, under ``torch.no_grad``).
"""

from pathlib import Path

import h5py
import numpy as np

from darkflow.cflow.score import predict
from darkflow.cflow.train import load_run

SAVED = Path(__file__).parent / "data" / "saved_run"


def test_saved_run_gives_the_same_maps():
    model, meta = load_run(SAVED)
    assert meta["config"].get("gaussian") is None and len(model.gaussians) == 0
    with h5py.File(SAVED / "expected.h5") as h:
        images, maps, scores = h["images"][...], h["maps"][...], h["scores"][...]
    for batch_size in (1, 4, 64):
        new_maps, new_scores = predict(model, images, batch_size=batch_size)
        assert new_maps.dtype == np.float32 and new_maps.shape == maps.shape
        np.testing.assert_allclose(new_maps, maps, rtol=1e-5, atol=1e-5 * np.abs(maps).max())
        np.testing.assert_allclose(new_scores, scores, rtol=1e-5, atol=1e-5 * np.abs(scores).max())
