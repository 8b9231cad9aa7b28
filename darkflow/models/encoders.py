"""Event encoders: a 2D ConvNet over the (R, F) array and a graph network over the real objects.

Both map a standardized event to a feature vector ``(B, H)``; the VAE's latent and flow-context heads
sit on top, so any flow works with either encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

N_TYPES = 8
"""Node types of the graph encoder: the seven object types and MET (codes 1..8 of ``TYPE_CODES``)."""


class ConvEncoder(nn.Module):
    """2D convolutions over the event image, then dense layers.

    The first convolution spans all features of 3 neighbouring rows (DarkFlow's ConvVAE shape), the
    next ones slide along the rows.

    Shapes:
        forward: ``x`` ``(B, R, F)``, ``mask`` ``(B, R)``, ``types`` ``(B, R)`` -> ``(B, hidden)``.

    References:
        DarkFlow (2021), ConvVAE; Y. LeCun et al., "Gradient-based learning applied to document
        recognition", Proc. IEEE 86 (1998).
    """

    def __init__(self, rows: int, features: int, channels: Sequence[int] = (32, 64), hidden: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(channels):
            kernel = (3, features) if i == 0 else (3, 1)
            layers += [nn.Conv2d(c_in, c, kernel, padding=(1, 0)), nn.ELU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c_in * rows, hidden), nn.ELU())
        self.out_features = hidden

    def forward(self, x: Tensor, mask: Tensor, types: Tensor) -> Tensor:
        return self.dense(self.conv(x.unsqueeze(1)))


def fully_connected_edges(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nodes and edges of a batch of events: every pair of real objects of an event, both directions.

    Shapes:
        mask: bool ``(B, R)`` -> ``edge_index`` ``(2, E)``, ``batch`` ``(N,)``, flat node positions ``(N,)``.
    """
    b, r = mask.shape
    flat = mask.reshape(-1)
    node_id = torch.cumsum(flat.long(), 0) - 1
    pairs = mask.unsqueeze(2) & mask.unsqueeze(1) & ~torch.eye(r, dtype=torch.bool, device=mask.device)
    ev, i, j = pairs.nonzero(as_tuple=True)
    base = ev * r
    edge_index = torch.stack([node_id[base + j], node_id[base + i]])
    positions = flat.nonzero(as_tuple=True)[0]
    return edge_index, positions // r, positions


class GraphEncoder(nn.Module):
    """EdgeConv layers over the real objects (fully connected), then mean and max pooling.

    Node features are the standardized kinematics and a one-hot of the object type.

    Shapes:
        forward: ``x`` ``(B, R, F)``, ``mask`` bool ``(B, R)``, ``types`` int ``(B, R)`` (1..8) -> ``(B, hidden)``.

    References:
        Y. Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", ACM TOG 38 (2019).
    """

    def __init__(self, features: int, channels: Sequence[int] = (64, 64), hidden: int = 128) -> None:
        super().__init__()
        from darkflow.train.dataset import import_torch_geometric

        import_torch_geometric()  # imports it with its import-time deprecation warning silenced
        from torch_geometric.nn import EdgeConv

        self.convs = nn.ModuleList()
        c_in = features + N_TYPES
        for c in channels:
            mlp = nn.Sequential(nn.Linear(2 * c_in, c), nn.ELU(), nn.Linear(c, c), nn.ELU())
            self.convs.append(EdgeConv(mlp, aggr="max"))
            c_in = c
        self.dense = nn.Sequential(nn.Linear(2 * c_in, hidden), nn.ELU())
        self.out_features = hidden

    def forward(self, x: Tensor, mask: Tensor, types: Tensor) -> Tensor:
        from torch_geometric.nn import global_max_pool, global_mean_pool

        edge_index, batch, positions = fully_connected_edges(mask)
        onehot = nn.functional.one_hot((types.reshape(-1)[positions] - 1).clamp(0, N_TYPES - 1), N_TYPES)
        h = torch.cat([x.reshape(-1, x.shape[-1])[positions], onehot.to(x.dtype)], dim=1)
        for conv in self.convs:
            h = conv(h, edge_index)
        size = mask.shape[0]
        pooled = torch.cat([global_mean_pool(h, batch, size), global_max_pool(h, batch, size)], dim=1)
        return self.dense(pooled)
