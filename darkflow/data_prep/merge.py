"""``darkflow merge``: concatenate event files (e.g. the shards of a batch conversion) into one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from darkflow.config import Name, StrictModel, at_least_one


class MergeConfig(StrictModel):
    """Options of ``darkflow merge``: the files to concatenate, the output and its label."""

    shards: Annotated[list[Name], at_least_one("give at least one event file (.h5) to merge")]
    out: Name
    label: str | None = None


@dataclass
class MergeResult:
    """What was merged: the output, its events and the number of input files."""

    out: Path
    n_events: int
    n_files: int
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        return [f"wrote {self.out}: {self.n_events} events from {self.n_files} file(s)"]


def merge(config: MergeConfig) -> MergeResult:
    """Concatenate ``config.shards`` into ``config.out`` (:func:`darkflow.events.merge`)."""
    from darkflow import events

    attrs = events.merge(config.shards, config.out, label=config.label)
    return MergeResult(Path(config.out), int(attrs["n_selected"]), len(config.shards))
