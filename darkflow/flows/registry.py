"""The flow registry: one name per flow, one builder per name (DESIGN section 4)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from darkflow.errors import ConfigError
from darkflow.flows.base import Flow

FLOWS: dict[str, Callable[..., Flow]] = {}
"""Every flow name mapped to its builder ``(features, context, **options) -> Flow``."""


def register(name: str) -> Callable[[Callable[..., Flow]], Callable[..., Flow]]:
    """Decorator adding a builder to :data:`FLOWS` under ``name``."""

    def add(builder: Callable[..., Flow]) -> Callable[..., Flow]:
        if name in FLOWS:
            raise RuntimeError(f"flow {name!r} registered twice")
        FLOWS[name] = builder
        return builder

    return add


def flow_options(name: str) -> dict[str, Any]:
    """The options a flow accepts beyond ``features`` and ``context``, with their defaults."""
    _known(name)
    params = inspect.signature(FLOWS[name]).parameters
    return {k: p.default for k, p in params.items() if k not in ("features", "context")}


def _known(name: str) -> None:
    if name not in FLOWS:
        raise ConfigError(f"unknown flow {name!r}; valid: {', '.join(sorted(FLOWS))}")


def build_flow(name: str, features: int, context: int = 0, **options: Any) -> Flow:
    """Build flow ``name`` for ``features``-dimensional z and a ``context``-dimensional condition.

    Raises:
        ValueError: an unknown name (the valid names are listed) or option (the valid options are listed).
    """
    _known(name)
    valid = flow_options(name)
    bad = sorted(set(options) - set(valid))
    if bad:
        raise ConfigError(f"flow {name!r} has no option {bad[0]!r}; valid options: {', '.join(sorted(valid)) or 'none'}")
    return FLOWS[name](features=features, context=context, **options)


@register("none")
def _none(features: int, context: int = 0, num_layers: int = 0) -> Flow:
    """No flow: the identity (the plain Gaussian posterior)."""
    from darkflow.flows.base import Identity

    return Identity(features, context, num_layers)
