"""One convention for benchmark figures: every script prints its table and also records it as JSON.

``record("bench_x", rows)`` writes ``benchmarks/results/bench_x.json`` atomically: the machine it ran on and
one dict per row (``name``, ``value``, ``unit``, ``reference``, ``target``, ``ok`` and any extra keys), so that
``benchmarks/make_results.py`` can gather every figure into ``RESULTS.md`` without a number typed by hand.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """A description of the machine: cores, CPU model, memory, platform, torch version and threads, and the
    free-text ``DARKFLOW_BENCH_NOTE`` environment variable (how the run was placed on the machine)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    info: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                            else os.cpu_count(), "cpu": cpu, "memory_gib": memory,
                            "platform": platform.platform(), "python": platform.python_version()}
    if os.environ.get("DARKFLOW_BENCH_NOTE"):
        info["note"] = os.environ["DARKFLOW_BENCH_NOTE"]
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                    gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError:
        pass
    return info


def record(script: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None,
           results: Path | None = None) -> Path:
    """Write ``benchmarks/results/<script>.json`` (or ``results/<script>.json``) atomically; return its path."""
    folder = Path(results) if results is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{script}.json"
    payload = {"script": script, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": machine(), "rows": rows, **(extra or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    os.replace(tmp, path)
    return path
