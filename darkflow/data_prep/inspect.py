"""``darkflow inspect``: the summary of each event file (counts, layout, processes, feature ranges)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from darkflow.config import Name, StrictModel, at_least_one


class InspectConfig(StrictModel):
    """Options of ``darkflow inspect``: the event files to summarize."""

    files: Annotated[list[Name], at_least_one("give at least one event file (.h5)")]


@dataclass
class InspectResult:
    """One summary per file, in the order given."""

    summaries: list[str]
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summaries the command prints."""
        return list(self.summaries)


def inspect(config: InspectConfig) -> InspectResult:
    """Summarize every file of ``config.files`` (:func:`darkflow.events.summarize`)."""
    from darkflow.events import summarize

    return InspectResult([summarize(path) for path in config.files])
