"""An event-weighted mean over a whole epoch, accumulated in float64 and summed across DDP processes."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class WeightedMean(Metric):
    """``sum_i w_i v_i / sum_i |w_i|`` over every event given to :meth:`update` on every process.

    With non-negative weights this is the weighted mean ``sum w v / sum w``. Negative weights (NLO samples)
    keep their sign in the numerator and count by their size in the normalization, as in the training
    step (:class:`darkflow.train.module.DarkFlowModule`), so the training and validation losses are the
    same quantity. Written out because ``torchmetrics.MeanMetric(nan_strategy="disable")`` (torchmetrics
    1.9) replaces every weight by one.

    Shapes:
        update: ``values`` ``(B,)``, ``weights`` ``(B,)``; compute: a float64 scalar (NaN when every weight is zero).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("weighted_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: Tensor, weights: Tensor) -> None:
        values, weights = values.to(torch.float64), weights.to(torch.float64)
        self.weighted_sum += (weights * values).sum()
        self.weight_sum += weights.abs().sum()

    def compute(self) -> Tensor:
        if self.weight_sum == 0:
            return torch.full((), float("nan"), dtype=torch.float64, device=self.weight_sum.device)
        return self.weighted_sum / self.weight_sum
