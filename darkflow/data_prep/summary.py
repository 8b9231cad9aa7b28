"""``darkflow inspect``: a human-readable summary of an event file, computed by streaming."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from darkflow.data_prep.store import open_event_file, read_attrs


def summarize(path: str | os.PathLike, block: int = 65_536) -> str:
    """Counts, layout, processes (events and summed weights) and per-feature ranges of real objects."""
    path = Path(path)
    with open_event_file(path) as handle:
        attrs = read_attrs(handle)
        n, n_rows, n_feat = handle["objects"].shape
        layout = attrs.get("layout", {})
        features = layout.get("features", [f"f{i}" for i in range(n_feat)])
        hlf_names = attrs.get("hlf_names", [])
        processes = attrs.get("process_names", [])
        n_proc = np.zeros(max(len(processes), 1), dtype=np.int64)
        w_proc = np.zeros_like(n_proc, dtype=np.float64)
        f_sum = np.zeros(n_feat)
        f_min = np.full(n_feat, np.inf)
        f_max = np.full(n_feat, -np.inf)
        n_obj = 0
        occupancy = np.zeros(n_rows, dtype=np.int64)
        h_sum = np.zeros(len(hlf_names))
        is_met = np.array([r == "met" for r in layout.get("rows", [])] or [False] * n_rows)
        for lo in range(0, n, block):
            obj = handle["objects"][lo : lo + block]
            mask = handle["mask"][lo : lo + block]
            proc = handle["process"][lo : lo + block].astype(np.int64)
            n_proc += np.bincount(proc, minlength=len(n_proc))[: len(n_proc)]
            w_proc += np.bincount(proc, weights=handle["weight"][lo : lo + block], minlength=len(n_proc))[: len(n_proc)]
            real = obj[mask & ~is_met]
            if len(real):
                f_sum += real.sum(axis=0)
                f_min = np.minimum(f_min, real.min(axis=0))
                f_max = np.maximum(f_max, real.max(axis=0))
            n_obj += len(real)
            occupancy += mask.sum(axis=0)
            if hlf_names:
                h_sum += handle["hlf"][lo : lo + block].sum(axis=0)
    size_mb = path.stat().st_size / 2**20
    channel = attrs.get("channel", {})
    lines = [
        f"{path}  ({size_mb:.1f} MiB, darkflow {attrs.get('darkflow_version', '?')}, created {attrs.get('created', '?')})",
        f"label: {attrs.get('label', '')}   events: {n}   read: {attrs.get('n_read', '?')}   "
        f"selected: {attrs.get('n_selected', '?')}   skipped: {attrs.get('n_skipped', 0)}",
        f"source: {attrs.get('source', {}).get('name', '?')}   channel: {channel.get('name', 'none')}   "
        f"shard: {attrs.get('shard') or '-'}",
        f"layout: {layout.get('name', '?')}  {n_rows} rows x {n_feat} features ({', '.join(features)})",
    ]
    blocks = layout.get("blocks", [])
    if blocks:
        parts = [f"{'+'.join(b['types'])}:{b['slots']}" for b in blocks]
        lines.append("  blocks: " + ", ".join(parts) + (", met:1" if layout.get("met_row") else ""))
    lines.append(f"  mean occupied slots per event: {occupancy.sum() / max(n, 1):.2f}")
    if "simulation" in attrs:
        lines.append(f"simulation: {'yes' if attrs['simulation'] else 'no (real data)'}")
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
