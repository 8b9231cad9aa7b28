"""DarkFlow.

``from darkflow import Scorer`` (:class:`darkflow.scorer.Scorer`) is imported on first use, so that importing
the package (and ``darkflow --help``) stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Scorer", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Scorer":
        from darkflow.scorer import Scorer

        return Scorer
    raise AttributeError(f"module 'darkflow' has no attribute {name!r}")
