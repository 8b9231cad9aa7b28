"""CFLOW-AD's decoders: one conditional normalizing flow per encoder scale, from the flow registry."""

from __future__ import annotations

from torch import nn

from darkflow.errors import ConfigError


def build_decoders(channels: list[int], flow: str = "cflow-coupling", blocks: int = 8, clamp: float = 1.9,
                   pos_dim: int = 128, flow_options: dict | None = None) -> nn.ModuleList:
    """One flow ``build_flow(flow, features=C_s, context=pos_dim)`` per scale.

    ``blocks`` sets the flow's ``num_layers`` and ``clamp`` its ``clamp`` where the flow has one;
    ``flow_options`` passes any other option of the flow (``cflow-coupling`` defaults to CFLOW-AD's
    ``permutation: orthogonal``).

    Arguments:
        channels: ``C_s`` of every scale.
        flow: a registry name whose flow takes a context (``cflow-coupling``, ``realnvp``, ``maf``, ...).

    Shapes:
        each decoder: fibers ``(B, C_s)``, positional encodings ``(B, pos_dim)`` -> ``(B, C_s)``, ``(B,)``.

    References:
        D. Gudovskiy, S. Ishizaka, K. Kozuka, CFLOW-AD, WACV 2022 (arXiv:2107.12571).
    """
    from darkflow.flows import build_flow
    from darkflow.flows import flow_options as valid_options

    if flow == "none":
        raise ConfigError("decoder flow 'none' has nothing to learn; choose a conditional flow such as "
                          "cflow-coupling (default), realnvp, nsf-coupling or maf")
    valid = valid_options(flow)
    options = dict(flow_options or {})
    if "num_layers" in valid:
        options.setdefault("num_layers", blocks)
    if "clamp" in valid:
        options.setdefault("clamp", clamp)
    if flow == "cflow-coupling":
        options.setdefault("permutation", "orthogonal")  # CFLOW-AD's soft permutation (and faster)
    decoders = nn.ModuleList()
    for c in channels:
        try:
            decoder = build_flow(flow, features=c, context=pos_dim, **options)
        except ValueError as err:
            raise ConfigError(f"decoder flow {flow!r}: {err}") from None
        if decoder.context != pos_dim:
            raise ConfigError(f"flow {flow!r} does not take a context; choose a conditional flow such as "
                              "cflow-coupling, realnvp, nsf-coupling or maf")
        decoders.append(decoder)
    return decoders
