"""``darkflow prepare``: source files -> selected, padded, pT-ordered event arrays in HDF5."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator, model_validator

from darkflow.config import Name, StrictModel
from darkflow.data_prep import builtin
from darkflow.data_prep.channels import Channel, load_channel
from darkflow.data_prep.chunk import EventChunk
from darkflow.data_prep.features import HLF_NAMES, high_level_features, ht
from darkflow.data_prep.jagged import Jagged
from darkflow.data_prep.layout import Layout, load_layout
from darkflow.data_prep.objects import ObjectDefinitions, load_objects, select_objects
from darkflow.data_prep.prefetch import prefetch
from darkflow.data_prep.schema import SourceSchema, load_schema
from darkflow.data_prep.store import EventFileWriter
from darkflow.errors import ConfigError, DataError, InputError

ROOT_SOURCES = ("nanoaod", "nanoaod_opendata2015", "darkflow", "delphes")
"""Built-in schemas tried, in order, by ``--source auto``: the first whose tree and branches exist and
whose b-tag and ID branches are filled (see :func:`unfilled`; DeepCSV and the muon IDs are not in 2015 CMS
Open Data) is taken, else the first whose branches exist."""
SIMULATION_SOURCES = ("darkmachines", "darkflow", "delphes")
"""Sources that are simulation whatever their branches; any schema with a ``weight`` branch is too."""


class PrepareConfig(StrictModel):
    """Options of ``darkflow prepare`` (a YAML file with these keys, overridden by CLI flags)."""

    inputs: list[Name]
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

    @field_validator("inputs")
    @classmethod
    def _some_input(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one ROOT or CSV file")
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
    """Pick a built-in source for one input from its content: CSV text or a ROOT tree's branches."""
    from darkflow.data_prep.root_reader import branch_names, is_root_file

    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if not is_root_file(path):
        with open(path, "rb") as handle:
            head = handle.read(4096)
        if b";" in head and b"\0" not in head:
            return "darkmachines"
        raise InputError(f"{path}: neither a ROOT file nor a Dark Machines CSV file (no ';' separated fields)")
    import uproot

    try:
        handle = uproot.open(path)
    except Exception as err:
        raise InputError(f"{path}: cannot be read as ROOT ({type(err).__name__}: {err})") from None
    tried, matching = [], []
    for name in ROOT_SOURCES:
        schema = load_schema(builtin.resolve("sources", name))
        tried.append(f"{name} (tree {schema.tree!r})")
        if schema.tree in handle:
            tree = handle[schema.tree]
            if set(schema.branches()) <= branch_names(tree):
                if not unfilled(tree, schema):
                    return name
                matching.append(name)
    if matching:
        return matching[0]
    raise InputError(
        f"{path}: `source` auto found no matching schema; tried {', '.join(tried)}; "
        "set `source` to a FILE.yaml describing its branches"
    )


def unfilled(tree, schema: SourceSchema, entries: int = 10_000) -> list[str]:
    """What the schema relies on that the tree does not fill, judged on the first ``entries`` events.

    A b-tag branch holding one constant value (no jet would be a b-jet), and an ID branch holding one
    constant value that fails the ID (every object of the collection would be dropped), as DeepCSV and
    ``Muon_mediumId`` are in 2015 CMS Open Data. Returns one phrase per problem.
    """
    import awkward as ak

    stop = min(tree.num_entries, entries)

    def values(branch: str) -> np.ndarray:
        return ak.to_numpy(ak.flatten(tree[branch].array(entry_stop=stop, library="ak"), axis=None))

    found = []
    for name, coll in schema.collections.items():
        if coll.btag is not None:
            flat = values(coll.btag.branch)
            if len(flat) and np.unique(flat).size == 1:
                found.append(f"{coll.btag.branch} holds one constant value (no jet is a b-jet)")
        if coll.id is not None:
            flat = values(coll.id.branch)
            if len(flat) and np.unique(flat).size == 1 and not coll.id.passes(flat[:1]).any():
                found.append(f"{coll.id.branch} holds one constant value that fails the ID "
                             f"({coll.id.describe()}: every {name} is dropped)")
    return found


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


def as_jagged(chunk: EventChunk) -> EventChunk:
    """The chunk with every collection as :class:`Jagged` (readers may give awkward arrays)."""
    objects = {k: v if isinstance(v, Jagged) else Jagged.from_awkward(v) for k, v in chunk.objects.items()}
    return EventChunk(objects, chunk.met, chunk.met_phi, chunk.weight, chunk.event_id, chunk.process,
                      chunk.source, chunk.first_line)


def _check_finite(chunk: EventChunk, on_error: str) -> tuple[EventChunk, int]:
    """Drop (``skip``) or refuse (``fail``) events with NaN or inf in any input quantity."""
    bad = ~(np.isfinite(chunk.met) & np.isfinite(chunk.met_phi) & np.isfinite(chunk.weight))
    what = ["MET/MET_phi/weight"] if bad.any() else []
    for name, coll in chunk.objects.items():
        for key in ("E", "pt", "eta", "phi", "iso"):
            if key not in coll.fields:
                continue
            finite = np.isfinite(coll[key])
            if not finite.all():
                bad[coll.event[~finite]] = True
                what.append(f"{name} {key}")
    if not bad.any():
        return chunk, 0
    if on_error == "fail":
        ids = ", ".join(str(i) for i in chunk.event_id[bad][:5])
        raise DataError(
            f"{chunk.source}: {int(bad.sum())} event(s) in this chunk have NaN or inf in {', '.join(what)} "
            f"(first event IDs: {ids}); fix the input or drop them with `on_error` skip"
        )
    keep = ~bad
    return EventChunk(
        objects={k: v.events(keep) for k, v in chunk.objects.items()},
        met=chunk.met[keep],
        met_phi=chunk.met_phi[keep],
        weight=chunk.weight[keep],
        event_id=chunk.event_id[keep],
        process=chunk.process[keep],
        source=chunk.source,
    ), int(bad.sum())


class _ProcessIndex:
    """Maps process names to int16 indices in order of first appearance, whatever the chunking."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, process: np.ndarray) -> np.ndarray:
        if len(process) == 0:
            return np.zeros(0, dtype=np.int16)
        if (process == process[0]).all():
            uniq, inverse = process[:1], np.zeros(len(process), dtype=np.intp)
        else:
            uniq, first, inverse = np.unique(process.astype(str), return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            uniq, inverse = uniq[order], np.argsort(order)[inverse]
        for name in uniq:
            if str(name) not in self.names:
                self.names.append(str(name))
        lookup = np.array([self.names.index(str(n)) for n in uniq], dtype=np.int16)
        return lookup[inverse]


def _readers(config: PrepareConfig, inputs: list[Path], source: str, schema: SourceSchema | None):
    if schema is None:
        from darkflow.data_prep.darkmachines import DarkMachinesReader

        readers = [DarkMachinesReader(p, chunk_size=config.chunk_size, on_error=config.on_error) for p in inputs]
    else:
        from darkflow.data_prep.root_reader import RootReader

        readers = []
        offset = 0
        for p in inputs:
            reader = RootReader(p, schema, chunk_size=config.chunk_size, process=config.process,
                                index_offset=offset)
            offset += reader.count_events()
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


@dataclass
class ConversionSpec:
    """Everything needed to convert events once the inputs are resolved (picklable, sent to Dask workers)."""

    layout: Layout
    objects_def: ObjectDefinitions
    channel: Channel | None
    schema: SourceSchema | None
    chunk_size: int
    on_error: str
    process: str | None


def prepare(config: PrepareConfig, progress: bool = True, client=None) -> PrepareResult:
    """Convert ``config.inputs`` into one HDF5 event file at ``config.out`` (see DESIGN section 3).

    With ``config.workers``, ``config.dask_scheduler`` or a ``dask.distributed.Client`` as ``client``,
    the entry ranges are converted on a Dask cluster (:mod:`darkflow.data_prep.dask_prepare`); the file
    written is the same, dataset for dataset.
    """
    from darkflow.progress import progress_bar

    inputs = [Path(p) for p in config.inputs]
    if not inputs:
        raise InputError("no input files given")
    for p in inputs:
        if not p.is_file():
            raise InputError(f"input file not found: {p}")
    out = Path(config.out)
    if out.resolve() in {p.resolve() for p in inputs}:
        raise InputError(f"`out` {out} is also an input; choose another output path")
    layout = load_layout(builtin.resolve("layouts", config.layout))
    objects_def = load_objects(builtin.resolve("objects", config.objects))
    channel = None if config.channel == "none" else load_channel(builtin.resolve("channels", config.channel, ("none",)))
    source, schema = resolve_source(config.source, inputs)
    spec = ConversionSpec(layout, objects_def, channel, schema, config.chunk_size, config.on_error, config.process)
    parallel = client is not None or config.workers is not None or config.dask_scheduler is not None
    if parallel:
        from darkflow.data_prep.dask_prepare import connect

        cluster = connect(config.workers, config.dask_scheduler, config.dask_timeout, client)
    readers = _readers(config, inputs, source, schema)
    unit_warnings = [w for w in (getattr(r, "unit_warning", lambda: None)() for r in readers) if w]
    to_read = sum(r.stop - r.start for r in readers)
    processes = _ProcessIndex()
    with EventFileWriter(out, layout.n_rows, len(layout.features), len(HLF_NAMES),
                         compression=None if config.compression == "none" else config.compression) as writer:
        bar = progress_bar(f"prepare {out.name}", to_read, enabled=progress)
        with bar:
            if parallel:
                from darkflow.data_prep.dask_prepare import convert_on_cluster

                with cluster:
                    n_read, n_selected, n_bad, n_skipped = convert_on_cluster(
                        cluster.client, spec, readers, writer, processes, bar)
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


def _convert_here(spec: ConversionSpec, readers, writer: EventFileWriter, processes: _ProcessIndex,
                  bar) -> tuple[int, int, int]:
    """The single-process path: read, convert and write overlapped in three threads; returns the counts."""
    n_read = n_selected = n_bad = 0
    layout = spec.layout
    with ThreadPoolExecutor(1, thread_name_prefix="darkflow-write") as io:
        pending = None
        # Two sets of output buffers: one is filled while the writer thread stores the other.
        shape = (spec.chunk_size, layout.n_rows)
        ring = [(np.zeros((*shape, len(layout.features)), np.float32), np.zeros(shape, bool)) for _ in range(2)]
        for i, chunk in enumerate(prefetch(_chunks(readers), depth=1)):
            n_read += len(chunk)
            chunk, bad = _check_finite(as_jagged(chunk), spec.on_error)
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


def convert_range(spec: ConversionSpec, path: str, start: int, stop: int, index_offset: int) -> dict:
    """Convert entries ``[start, stop)`` of one input, as the single-process path does (run on a worker).

    Returns the datasets of DESIGN section 3 with ``process`` indexing the returned ``process_names``
    (every process read, in order of first appearance), and the counts ``n_read``, ``n_bad``, ``n_skipped``.
    """
    if spec.schema is None:
        from darkflow.data_prep.darkmachines import DarkMachinesReader

        reader = DarkMachinesReader(path, chunk_size=spec.chunk_size, on_error=spec.on_error, start=start, stop=stop)
    else:
        from darkflow.data_prep.root_reader import RootReader

        reader = RootReader(path, spec.schema, chunk_size=spec.chunk_size, start=start, stop=stop,
                            process=spec.process, index_offset=index_offset)
    processes = _ProcessIndex()
    parts, n_read, n_bad = [], 0, 0
    for chunk in reader:
        n_read += len(chunk)
        chunk, bad = _check_finite(as_jagged(chunk), spec.on_error)
        n_bad += bad
        processes(chunk.process)
        arrays = convert_chunk(chunk, spec.objects_def, spec.channel, spec.layout)
        arrays["process"] = processes(arrays.pop("process_name"))
        parts.append(arrays)
    if parts:
        result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
        n_rows, n_feat = spec.layout.n_rows, len(spec.layout.features)
        result = {"objects": np.zeros((0, n_rows, n_feat), np.float32), "mask": np.zeros((0, n_rows), bool),
                  "hlf": np.zeros((0, len(HLF_NAMES)), np.float32), "weight": np.zeros(0),
                  "event_id": np.zeros(0, np.int64), "process": np.zeros(0, np.int16)}
    return result | {"process_names": processes.names, "n_read": n_read, "n_bad": n_bad,
                     "n_skipped": getattr(reader, "n_skipped", 0)}


def convert_chunk(
    chunk: EventChunk,
    objects_def: ObjectDefinitions,
    channel: Channel | None,
    layout: Layout,
    buffers: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Object cuts, channel selection, layout and high-level features for one chunk of Jagged objects.

    Returns the datasets of DESIGN section 3 for the selected events (``process_name`` as strings);
    ``buffers`` are passed to :meth:`Layout.build`.
    """
    objects = select_objects(chunk.objects, objects_def)
    met, met_phi = chunk.met, chunk.met_phi
    hts = ht(objects)
    keep = channel.passes(objects, met, hts) if channel is not None else None
    if keep is not None and not keep.all():
        objects = {k: v.events(keep) for k, v in objects.items()}
        met, met_phi, hts = met[keep], met_phi[keep], hts[keep]
    else:
        keep = slice(None)
    arrays, mask = layout.build(objects, met, met_phi, buffers)
    return {
        "objects": arrays,
        "mask": mask,
        "hlf": high_level_features(objects, met, met_phi, hts),
        "weight": chunk.weight[keep].astype(np.float64),
        "event_id": chunk.event_id[keep].astype(np.int64),
        "process_name": chunk.process[keep],
    }


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
