"""``darkflow inspect``: a human-readable summary of an event file, computed by streaming."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from darkflow.events.file import BLOCK

if TYPE_CHECKING:
    from darkflow.events.file import EventFile


def summarize(path: str | os.PathLike) -> str:
    """The summary of the event file ``path`` (validated first; one-line errors otherwise)."""
    from darkflow.events.file import EventFile

    with EventFile(path) as events:
        return summary_text(events)


def summary_text(events: EventFile, block: int = BLOCK) -> str:
    """Counts, layout, processes (events and summed weights) and per-feature ranges of real objects."""
    attrs = events.attrs
    n, n_rows, n_feat = events.n_events, events.n_rows, events.n_features
    layout = events.layout
    features = events.features
    hlf_names = events.hlf_names
    processes = events.process_names
    n_proc = np.zeros(max(len(processes), 1), dtype=np.int64)
    w_proc = np.zeros_like(n_proc, dtype=np.float64)
    f_sum = np.zeros(n_feat)
    f_min = np.full(n_feat, np.inf)
    f_max = np.full(n_feat, -np.inf)
    n_obj = 0
    occupancy = np.zeros(n_rows, dtype=np.int64)
    h_sum = np.zeros(len(hlf_names))
    is_met = np.array([r == "met" for r in events.rows])
    for _, part in events.blocks(block):
        obj, mask = part["objects"], part["mask"]
        proc = part["process"].astype(np.int64)
        n_proc += np.bincount(proc, minlength=len(n_proc))[: len(n_proc)]
        w_proc += np.bincount(proc, weights=part["weight"], minlength=len(n_proc))[: len(n_proc)]
        real = obj[mask & ~is_met]
        if len(real):
            f_sum += real.sum(axis=0)
            f_min = np.minimum(f_min, real.min(axis=0))
            f_max = np.maximum(f_max, real.max(axis=0))
        n_obj += len(real)
        occupancy += mask.sum(axis=0)
        if hlf_names:
            h_sum += part["hlf"].sum(axis=0)
    size_mb = events.path.stat().st_size / 2**20
    channel = events.channel
    created = f", created {attrs['created']}" if "created" in attrs else ""
    lines = [
        f"{events.path}  ({size_mb:.1f} MiB, darkflow {attrs.get('darkflow_version', '?')}{created})",
        f"label: {attrs.get('label', '')}   events: {n}   read: {attrs.get('n_read', '?')}   "
        f"selected: {attrs.get('n_selected', '?')}   skipped: {attrs.get('n_skipped', 0)}",
        f"source: {events.source.get('name', '?')}   channel: {channel.get('name', 'none')}   "
        f"shard: {attrs.get('shard') or '-'}",
        f"layout: {layout.get('name', '?')}  {n_rows} rows x {n_feat} features ({', '.join(features)})",
    ]
    blocks = layout.get("blocks", [])
    if blocks:
        parts = [f"{'+'.join(b['types'])}:{b['slots']}" for b in blocks]
        lines.append("  blocks: " + ", ".join(parts) + (", met:1" if layout.get("met_row") else ""))
    lines.append(f"  mean occupied slots per event: {occupancy.sum() / max(n, 1):.2f}")
    if events.simulation is not None:
        lines.append(f"simulation: {'yes' if events.simulation else 'no (real data)'}")
    lines += _objects_lines(attrs.get("objects_definition", {}))
    lines.append("processes:")
    for i, name in enumerate(processes):
        lines.append(f"  {i:3d} {name:<32s} events {n_proc[i]:>10d}   sum of weights {w_proc[i]:.6g}")
    lines.append(f"objects (real slots, MET row excluded, {n_obj} in all):")
    for j, name in enumerate(features):
        if n_obj:
            lines.append(f"  {name:>6s}  mean {f_sum[j] / n_obj:10.4g}   min {f_min[j]:10.4g}   max {f_max[j]:10.4g}")
    if hlf_names and n:
        lines.append("high-level features (mean): " + ", ".join(
            f"{h}={v / n:.4g}" for h, v in zip(hlf_names, h_sum, strict=True)))
    return "\n".join(lines)


def _objects_lines(definition: dict) -> list[str]:
    """The object requirements in two or three short lines (files written before they were recorded: none)."""
    reqs = definition.get("requirements")
    if not reqs:
        return []

    def types_with(key: str, kind: str) -> str:
        names = [t for t, r in reqs.items() if key in r[kind]]
        return ", ".join(names) or "none"

    lines = [f"objects: ID on {types_with('id', 'applied')}; isolation on {types_with('rel_iso_max', 'applied')}"]
    for rule in definition.get("overlap_removal", []):
        lines.append(f"  overlap removal: {'/'.join(rule['remove'])} within Delta R < {rule['delta_r']:g} of "
                     f"{'/'.join(rule['near'])}")
    missing = [f"{t} ({', '.join(r['not_provided'])})" for t, r in reqs.items() if r["not_provided"]]
    if missing:
        lines.append(f"  not provided by the source: {', '.join(missing)}")
    return lines
