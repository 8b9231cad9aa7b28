"""Every normalizing flow of DarkFlow, one family per module, built through one registry.

>>> from darkflow.flows import build_flow
>>> flow = build_flow("planar", features=8, context=16, num_layers=4)
>>> z_k, log_det = flow(z_0, context)     # (B, 8), (B,)
"""

from darkflow.flows.base import Flow, Identity, IndexedContext, Sequential
from darkflow.flows.registry import FLOWS, build_flow, flow_options, register

__all__ = ["FLOWS", "Flow", "Identity", "IndexedContext", "Sequential", "build_flow", "flow_options", "register"]

# Importing the families registers their flows.
from darkflow.flows import (  # noqa: E402, F401
    autoregressive,
    cflow_coupling,
    cnf,
    convflow,
    coupling,
    planar,
    radial,
    sylvester,
)
