"""``darkflow prepare``: source files -> selected, padded, pT-ordered event arrays in HDF5."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import field_validator, model_validator

from darkflow.config import Name, StrictModel, at_least_one
from darkflow.data_prep import builtin
from darkflow.data_prep.channels import Channel, load_channel
from darkflow.data_prep.chunk import EventChunk
from darkflow.data_prep.convert import (
    ConversionSpec,
    ProcessIndex,
    as_jagged,
    convert_chunk,
    drop_nonfinite,
    open_reader,
)
from darkflow.data_prep.detect import detect_source, unfilled
from darkflow.data_prep.features import HLF_NAMES
from darkflow.data_prep.layout import load_layout
from darkflow.data_prep.objects import load_objects
from darkflow.data_prep.prefetch import prefetch
from darkflow.data_prep.schema import SourceSchema, load_schema
from darkflow.errors import ConfigError, DataError, InputError
from darkflow.events import EventFileWriter, created_stamp
from darkflow.fileio import check_input, check_output

SIMULATION_SOURCES = ("darkmachines", "darkflow", "delphes")
"""Sources that are simulation whatever their branches; any schema with a ``weight`` branch is too."""


class PrepareConfig(StrictModel):
    """Options of ``darkflow prepare`` (a YAML file with these keys, overridden by CLI flags)."""

    inputs: Annotated[list[Name], at_least_one("give at least one ROOT or CSV file")]
    out: Name
    source: str = "auto"
    channel: str = "none"
    layout: str = "default"
    objects: str = "darkmachines"
    label: str | None = None
    process: str | None = None
    max_events: int | None = None
    chunk_size: int = 100_000
    shard: str | None = None
    on_error: Literal["fail", "skip"] = "fail"
    compression: Literal["none", "gzip", "lzf"] = "none"
    workers: int | None = None
    dask_scheduler: str | None = None
    dask_timeout: float = 10.0

    @field_validator("max_events", "chunk_size", "workers")
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value

    @model_validator(mode="after")
    def _one_cluster(self) -> PrepareConfig:
        if self.workers is not None and self.dask_scheduler is not None:
            raise ValueError("give `workers` (a local Dask cluster) or `dask_scheduler` (a cluster's address), not both")
        return self


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (shards are numbered from 0)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"`shard` {text!r} must look like I/N, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"`shard` {text!r}: need 0 <= I < N (shards are numbered from 0)")
    return i, n


@dataclass
class PrepareResult:
    """What a conversion read, selected and wrote."""

    out: Path
    n_read: int
    n_selected: int
    n_skipped: int
    process_names: list[str]
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The summary the command prints."""
        skipped = f", skipped {self.n_skipped}" if self.n_skipped else ""
        return [f"wrote {self.out}: {self.n_selected} of {self.n_read} events selected{skipped}"]


def _detect_source(path: Path) -> str:
    """Pick a built-in source for one input from its content (:func:`darkflow.data_prep.detect.detect_source`)."""
    found = detect_source(path)
    if found.source is None:
        tried = "; ".join(f"{check.name}: {check.problem()}" for check in found.checks)
        raise InputError(f"{path}: `source` auto found no matching schema (tried {tried}); set `source` to a "
                         "FILE.yaml describing its branches")
    return found.source


def is_simulation(source: str, schema: SourceSchema | None) -> bool:
    """Whether a source holds simulated events: Dark Machines CSV, generator output, Delphes, or any schema
    with a (generator) ``weight`` branch."""
    return source in SIMULATION_SOURCES or schema is None or schema.weight is not None


def resolve_source(name: str, inputs: list[Path]) -> tuple[str, SourceSchema | None]:
    """The source's name and schema (None for the Dark Machines CSV)."""
    if name == "auto":
        found = {str(p): _detect_source(p) for p in inputs}
        kinds = sorted(set(found.values()))
        if len(kinds) > 1:
            raise InputError(f"`source` auto: inputs are of different kinds ({found}); convert them separately")
        name = kinds[0]
    if name == "darkmachines":
        return name, None
    path = builtin.resolve("sources", name, extra=("auto", "darkmachines"))
    schema = load_schema(path)
    return schema.name, schema


def _ranges(counts: list[int], max_events: int | None, shard: tuple[int, int] | None) -> list[tuple[int, int]]:
    """Per-input ``[start, stop)`` entry ranges after ``--max-events`` and ``--shard``."""
    total = sum(counts)
    if max_events is not None:
        total = min(total, max_events)
    lo, hi = 0, total
    if shard is not None:
        i, n = shard
        lo, hi = total * i // n, total * (i + 1) // n
    out, offset = [], 0
    for count in counts:
        start, stop = max(lo - offset, 0), min(hi - offset, count)
        out.append((start, max(stop, start)))
        offset += count
    return out


def _readers(config: PrepareConfig, spec: ConversionSpec, inputs: list[Path]):
    readers, offset = [], 0
    for p in inputs:
        reader = open_reader(spec, str(p), index_offset=offset)
        offset += reader.count_events() if spec.schema is not None else 0
        readers.append(reader)
    counts = [r.count_events() for r in readers]
    shard = parse_shard(config.shard) if config.shard else None
    for reader, (start, stop) in zip(readers, _ranges(counts, config.max_events, shard), strict=True):
        reader.start, reader.stop = start, stop
    return readers


def _chunks(readers) -> Iterator[EventChunk]:
    for reader in readers:
        if reader.stop is None or reader.stop > reader.start:
            yield from reader


def prepare(config: PrepareConfig, progress: bool = True, client=None) -> PrepareResult:
    """Convert ``config.inputs`` into one HDF5 event file at ``config.out`` (see DESIGN section 3).

    Every option and the output path are checked before any input is read. With ``config.workers``,
    ``config.dask_scheduler`` or a ``dask.distributed.Client`` as ``client``, the entry ranges are converted
    on a Dask cluster (:mod:`darkflow.data_prep.dask_prepare`); the file written is the same, dataset for
    dataset, and a local cluster started here is closed however the conversion ends (interrupts included).
    """
    from darkflow.progress import progress_bar

    if not config.inputs:
        raise InputError("no input files given")
    inputs = [check_input(p, "input file") for p in config.inputs]
    out = check_output(config.out, inputs)
    created_stamp()
    layout = load_layout(builtin.resolve("layouts", config.layout))
    objects_def = load_objects(builtin.resolve("objects", config.objects))
    channel = None if config.channel == "none" else load_channel(builtin.resolve("channels", config.channel, ("none",)))
    compression = None if config.compression == "none" else config.compression
    parallel = client is not None or config.workers is not None or config.dask_scheduler is not None
    if parallel:
        from darkflow.dask_cluster import check_address

        check_address(config.dask_scheduler)
    source, schema = resolve_source(config.source, inputs)
    spec = ConversionSpec(layout, objects_def, channel, schema, config.chunk_size, config.on_error, config.process)
    processes = ProcessIndex()
    with contextlib.ExitStack() as stack:
        if parallel:
            from darkflow.dask_cluster import connect
            from darkflow.fileio import scratch_folder

            scratch = stack.enter_context(scratch_folder(out))  # removed after the cluster is closed
            cluster = stack.enter_context(connect(config.workers, config.dask_scheduler, config.dask_timeout, client))
        readers = _readers(config, spec, inputs)
        unit_warnings = [w for w in (getattr(r, "unit_warning", lambda: None)() for r in readers) if w]
        to_read = sum(r.stop - r.start for r in readers)
        writer = stack.enter_context(EventFileWriter(out, layout.n_rows, len(layout.features), len(HLF_NAMES),
                                                     compression=compression, inputs=inputs))
        with progress_bar(f"prepare {out.name}", to_read, enabled=progress) as bar:
            if parallel:
                from darkflow.data_prep.dask_prepare import convert_on_cluster

                n_read, n_selected, n_bad, n_skipped = convert_on_cluster(
                    cluster.client, spec, readers, writer, processes, bar, scratch)
            else:
                n_read, n_selected, n_bad = _convert_here(spec, readers, writer, processes, bar)
                n_skipped = sum(getattr(r, "n_skipped", 0) for r in readers)
        n_skipped += n_bad
        if n_read + n_skipped == 0:
            raise InputError(f"no events to read in {', '.join(map(str, inputs))} (empty tree or file, or empty shard)")
        warnings = _warn_unfilled(readers, schema)
        if n_selected == 0:
            warnings += _nothing_selected(n_read, n_skipped, channel, config)
        writer.close({
            "label": config.label or out.stem,
            "layout": layout.describe(),
            "hlf_names": list(HLF_NAMES),
            "process_names": processes.names,
            "source": {"name": source} if schema is None else schema.model_dump(mode="json"),
            "channel": channel.model_dump(mode="json") if channel else {"name": "none"},
            "objects_definition": objects_def.model_dump(mode="json")
            | {"requirements": objects_def.requirements(schema.provides() if schema else {})},
            "simulation": is_simulation(source, schema),
            "inputs": [str(p) for p in inputs],
            "n_read": n_read,
            "n_selected": n_selected,
            "n_skipped": n_skipped,
            "shard": config.shard or "",
        })
    return PrepareResult(out, n_read, n_selected, n_skipped, processes.names, unit_warnings + warnings)


def _convert_here(spec: ConversionSpec, readers, writer: EventFileWriter, processes: ProcessIndex,
                  bar) -> tuple[int, int, int]:
    """The single-process path: read, convert and write overlapped in three threads; returns the counts."""
    n_read = n_selected = n_bad = 0
    layout = spec.layout
    chunks = contextlib.closing(prefetch(_chunks(readers), depth=1))
    with ThreadPoolExecutor(1, thread_name_prefix="darkflow-write") as io, chunks as source:
        pending = None
        # Two sets of output buffers: one is filled while the writer thread stores the other.
        shape = (spec.chunk_size, layout.n_rows)
        ring = [(np.zeros((*shape, len(layout.features)), np.float32), np.zeros(shape, bool)) for _ in range(2)]
        for i, chunk in enumerate(source):
            n_read += len(chunk)
            chunk, bad = drop_nonfinite(as_jagged(chunk), spec.on_error)
            bar.update(n_read - bar.n)
            n_bad += bad
            processes(chunk.process)  # every process read is listed, even if none of its events pass
            arrays = convert_chunk(chunk, spec.objects_def, spec.channel, layout, ring[i % 2])
            arrays["process"] = processes(arrays.pop("process_name"))
            n_selected += len(arrays["objects"])
            if pending is not None:
                pending.result()  # the write of chunk i - 1; chunk i - 2's buffer is free again
            pending = io.submit(writer.append, **arrays)
        if pending is not None:
            pending.result()
    return n_read, n_selected, n_bad


def _warn_unfilled(readers, schema: SourceSchema | None) -> list[str]:
    """A warning when a b-tag or ID branch is not filled (e.g. DeepCSV and Muon_mediumId in 2015 NanoAOD)."""
    if schema is None or not readers:
        return []
    found = unfilled(readers[0].tree, schema)
    if not found:
        return []
    return [f"in {readers[0].path}, {'; '.join(found)}: not filled for this sample; for 2015 CMS Open Data set "
            "`source` to nanoaod_opendata2015 (CSVv2, particle-flow muons)"]


def _nothing_selected(n_read: int, n_skipped: int, channel: Channel | None, config: PrepareConfig) -> list[str]:
    """No event passes: an error (no file is written), except for a shard, which is part of a merge (a warning)."""
    skipped = f" ({n_skipped} skipped as malformed or NaN/inf)" if n_skipped else ""
    if channel is not None:
        message = f"no event of {n_read} read passes channel {channel.name} ({channel.describe()}){skipped}"
        advice = f"choose another `channel` or check the object definitions (`objects`: {config.objects})"
    else:
        message = f"no event is left{skipped}"
        advice = "fix the input (`on_error` skip dropped every event)"
    if config.shard:
        return [f"shard {config.shard}: {message}; its file holds no event and is kept for darkflow merge"]
    raise DataError(f"{message}; {advice}")
