"""Baseline: scikit-learn's IsolationForest on the flattened standardized event array.

scikit-learn fits the forest; the fitted trees are then kept as tensors (child indices, split features,
thresholds, node sizes) so that the model saves as a plain state dict (no pickle) and scores in batches
with the same formula as ``IsolationForest.score_samples`` (tested against it). Score ``total`` is the
anomaly score 2^(-E[h(x)] / c(psi)): higher is more anomalous.

References:
    F. T. Liu, K. M. Ting, Z.-H. Zhou, "Isolation Forest", ICDM 2008.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from darkflow.models.scaler import Standardizer

SCORES = ("total",)
EULER_GAMMA = 0.5772156649015329


def average_path_length(n: Tensor) -> Tensor:
    """c(n): the average path length of an unsuccessful search in a binary search tree of n points."""
    n = n.to(torch.float64)
    c = 2.0 * (torch.log((n - 1).clamp_min(1)) + EULER_GAMMA) - 2.0 * (n - 1) / n.clamp_min(1)
    return torch.where(n <= 1, torch.zeros_like(n), torch.where(n <= 2, torch.ones_like(n), c))


class IsolationForestModel(nn.Module):
    """An isolation forest over standardized, flattened events.

    Arguments:
        standardizer: the fitted :class:`Standardizer`.
        n_estimators, max_samples, seed: scikit-learn's ``IsolationForest`` options.

    Shapes:
        forward: ``objects`` ``(B, R, F)`` raw, ``mask`` bool ``(B, R)`` -> ``{"total": (B,)}``.
    """

    def __init__(self, standardizer: Standardizer, type_codes: list[int] | None = None, n_estimators: int = 200,
                 max_samples: int = 256, seed: int = 1) -> None:
        super().__init__()
        self.standardizer = standardizer
        self.n_estimators, self.max_samples, self.seed = n_estimators, max_samples, seed
        nodes = 2 * max_samples - 1
        for name, dtype in (("left", torch.long), ("right", torch.long), ("feature", torch.long),
                            ("threshold", torch.float64), ("n_node", torch.float64)):
            self.register_buffer(name, torch.zeros(n_estimators, nodes, dtype=dtype))
        self.register_buffer("psi", torch.tensor(float(max_samples), dtype=torch.float64))

    def flat(self, objects: Tensor, mask: Tensor) -> Tensor:
        return self.standardizer(objects, mask).reshape(objects.shape[0], -1)

    def fit(self, x: np.ndarray) -> IsolationForestModel:
        """Fit on flattened standardized events ``(N, R * F')`` with scikit-learn and keep the trees."""
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(x)),
                                 random_state=self.seed).fit(x)
        assert forest._max_features == x.shape[1], "trees must see every feature in order"
        self.left.fill_(-1)
        self.right.fill_(-1)
        for i, est in enumerate(forest.estimators_):
            tree = est.tree_
            n = tree.node_count
            self.left[i, :n] = torch.from_numpy(tree.children_left.astype(np.int64))
            self.right[i, :n] = torch.from_numpy(tree.children_right.astype(np.int64))
            self.feature[i, :n] = torch.from_numpy(np.maximum(tree.feature, 0).astype(np.int64))
            self.threshold[i, :n] = torch.from_numpy(tree.threshold)
            self.n_node[i, :n] = torch.from_numpy(tree.n_node_samples.astype(np.float64))
        self.psi.fill_(float(forest.max_samples_))
        return self

    def forward(self, objects: Tensor, mask: Tensor, sample: bool = True,
                hlf: Tensor | None = None) -> dict[str, Tensor]:
        x = self.flat(objects, mask).to(torch.float64)
        b, t = x.shape[0], self.n_estimators
        trees = torch.arange(t).expand(b, t)
        node = torch.zeros(b, t, dtype=torch.long)
        depth = torch.zeros(b, t, dtype=torch.float64)
        for _ in range(2 * self.max_samples):
            left = self.left[trees, node]
            active = left >= 0
            if not active.any():
                break
            value = torch.gather(x, 1, self.feature[trees, node])
            go_left = value <= self.threshold[trees, node]
            node = torch.where(active, torch.where(go_left, left, self.right[trees, node]), node)
            depth = depth + active
        path = depth + average_path_length(self.n_node[trees, node])
        score = torch.pow(2.0, -path.mean(dim=1) / average_path_length(self.psi))
        return {"total": score.to(objects.dtype)}
