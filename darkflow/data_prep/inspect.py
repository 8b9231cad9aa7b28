"""``darkflow inspect``: the summary of each event file (counts, layout, processes, feature ranges) or ROOT file
(trees, entries, branch groups, the ``--source auto`` pick)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from darkflow.config import Name, StrictModel, at_least_one


class InspectConfig(StrictModel):
    """Options of ``darkflow inspect``: the event files (.h5) and ROOT files to summarize."""

    files: Annotated[list[Name], at_least_one("give at least one event file (.h5) or ROOT file")]


@dataclass
class InspectResult:
    """One summary per file, in the order given."""

    summaries: list[str]
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summaries the command prints."""
        return list(self.summaries)


def summarize_any(path: str) -> str:
    """A ROOT file's summary (:func:`darkflow.data_prep.root_summary.summarize_root`) for a ``.root`` name or a
    file that starts with the ROOT signature, else the event file's (:func:`darkflow.events.summarize`)."""
    from darkflow.data_prep.root_reader import is_root_file

    candidate = Path(path)
    named = candidate.suffix.lower() == ".root"
    if named or (candidate.is_file() and candidate.stat().st_size and is_root_file(candidate)):
        from darkflow.data_prep.root_summary import summarize_root

        return summarize_root(candidate)
    from darkflow.events import summarize

    return summarize(path)


def inspect(config: InspectConfig) -> InspectResult:
    """Summarize every file of ``config.files``, event files and ROOT files mixed, in the order given."""
    return InspectResult([summarize_any(path) for path in config.files])
