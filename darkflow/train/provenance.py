"""What an event file was prepared with, and how it differs from a model's training file.

A run stores the description of its training file (:func:`describe`) in ``model.pt``; ``darkflow score``
compares every input with it (:func:`differences`): a model trained on one channel, set of object
definitions or source sees a different population in a file prepared otherwise, and its scores there
are not comparable to those of the training sample.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

COMPARED = ("channel", "objects_definition", "source")
"""Attributes compared by :func:`differences` (the layout is checked separately: it cannot differ at all)."""


def source_name(source: Any) -> str | None:
    """The name of a file's ``source`` attribute (a resolved schema dict, or a bare name)."""
    if isinstance(source, dict):
        return source.get("name")
    return None if source is None else str(source)


def describe(path: str | Path, attrs: dict[str, Any], events: int) -> dict[str, Any]:
    """The JSON description of an event file stored with a run: ``path`` (resolved: symbolic links
    followed) and ``given_path`` (absolute, as given), label, number of events,
    ``channel``, ``layout``, ``objects_definition``, ``source`` (its name) and ``simulation`` (``None``
    where the file has no such attribute; files prepared before these existed lack some)."""
    simulation = attrs.get("simulation")
    if isinstance(simulation, str):
        try:
            simulation = json.loads(simulation)
        except ValueError:
            pass
    return {"path": str(Path(path).resolve()), "given_path": os.path.abspath(path), "label": attrs.get("label"), "events": int(events),
            "channel": attrs.get("channel"), "layout": attrs.get("layout"),
            "objects_definition": attrs.get("objects_definition"), "source": source_name(attrs.get("source")),
            "simulation": simulation}


def _named(value: Any) -> str:
    """`` NAME`` of a selection that has a name, else nothing."""
    return f" {value['name']}" if isinstance(value, dict) and value.get("name") else ""


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flat(item, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): None if value == [] else value}


IGNORED = ("name", "description")
"""Keys that name a selection without changing it: two files whose cuts agree are prepared alike."""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _changed(mine: Any, theirs: Any) -> list[str]:
    """``key this vs training`` for every differing leaf of two nested dicts (missing or empty reads None)."""
    a, b = _flat(mine), _flat(theirs)
    keys = [k for k in sorted(a.keys() | b.keys())
            if k.rsplit(".", 1)[-1] not in IGNORED and not _same(a.get(k), b.get(k))]
    return [f"{k} {a.get(k)} vs {b.get(k)}" for k in keys]


def _summary(changes: list[str], limit: int = 3) -> str:
    return ", ".join(changes[:limit] + ([f"{len(changes) - limit} more"] if len(changes) > limit else []))


def differences(attrs: dict[str, Any], training: dict[str, Any]) -> list[str]:
    """How the file with attributes ``attrs`` differs from the training file described by ``training``
    (a :func:`describe` result): one phrase per differing attribute among :data:`COMPARED`, naming the
    differing cuts (``met_min 200.0 vs None``: this file's value, then the training file's).

    Channels and object definitions are compared by their cuts, not their names; an attribute missing on
    either side is not compared (files prepared before it existed).
    """
    found = []
    channel, ref = attrs.get("channel"), training.get("channel")
    if channel is not None and ref is not None and (changes := _changed(channel, ref)):
        found.append(f"channel{_named(channel)} differs from the training file's{_named(ref)} ({_summary(changes)})")
    objects, ref = attrs.get("objects_definition"), training.get("objects_definition")
    if objects is not None and ref is not None and (changes := _changed(objects, ref)):
        found.append(f"object definitions{_named(objects)} differ from the training file's{_named(ref)} "
                     f"({_summary(changes)})")
    source, ref = source_name(attrs.get("source")), training.get("source")
    if source is not None and ref is not None and source != ref:
        found.append(f"source {source} differs from the training file's {ref}")
    return found
