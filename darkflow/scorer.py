"""``darkflow.Scorer``: a trained run applied to awkward arrays of events inside an analysis.

The events go through the same conversion as ``darkflow prepare`` (:func:`darkflow.data_prep.root_reader.
chunk_from_branches`, then :func:`darkflow.data_prep.convert.convert_selected`: object definitions, channel,
layout, high-level features) with the source schema, object definitions, channel and layout the run's
training file was prepared with, and then through the model as ``darkflow score`` does (DESIGN section 5).
The output is aligned 1:1 with the input events: events that fail the channel (or carry NaN/inf in an input
quantity, which ``prepare`` refuses or skips) keep their place with NaN scores and ``selected`` False.

References:
    DESIGN sections 3 (event files) and 5 (scores files); T. Aarrestad et al., SciPost Phys. 12 (2022) 043
    (the Dark Machines channels and object definitions).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from darkflow.errors import InputError

if TYPE_CHECKING:
    import awkward as ak

    from darkflow.data_prep.channels import Channel
    from darkflow.data_prep.layout import Layout
    from darkflow.data_prep.objects import ObjectDefinitions
    from darkflow.data_prep.schema import SourceSchema

SELECTED = "selected"
"""The output field that says whether an event passed the run's channel (its scores are not NaN)."""
READ_STEP = 100_000
"""Entries read at a time by :meth:`Scorer.score_file`."""


class Scorer:
    """The model of a ``darkflow train`` run, applied to awkward arrays of events.

    Built once (reads the run's ``model.pt`` and what its training file was prepared with), then called on
    events: ``scorer(events)``. Picklable: the model is not pickled but loaded again, lazily, in every process
    that calls it (the run directory must be readable there), so ``scorer`` can be passed to
    ``dask_awkward.map_partitions`` (or use :meth:`dask`) and to a coffea processor.

    Arguments:
        run: a run directory of ``darkflow train`` (or its ``model.pt``): any model ``darkflow score`` takes
            (the VAEs, ``density``, ``hlf_density``, ``svdd``, ``isoforest``).
        device: torch device of the model (``"cpu"``, ``"cuda"``, ``"cuda:1"``); ``None``: CUDA where there is a
            GPU, else the CPU.
        source: the source schema of the events (a built-in name such as ``nanoaod_opendata2015`` or a YAML
            file); ``None``: the one the training file was prepared with. A run trained on Dark Machines CSV
            files needs one.
        batch_size: events per model call.

    Attributes:
        names: the output's score fields, in order: the model's scores (``darkflow score``'s names) then the
            ``hlf:NAME`` cut baselines.
        default_score: the model's default score (the one ``darkflow scan`` and ``flag`` use).
        schema, objects_definition, channel, layout: the conversion applied (those of the training file).
    """

    def __init__(self, run: str | Path, device: str | None = None, source: str | Path | None = None,
                 batch_size: int = 4096) -> None:
        from darkflow.data_prep.features import HLF_NAMES
        from darkflow.train.run import load_model, model_scores
        from darkflow.train.score import HLF_SKIPPED

        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.run = Path(run)
        self.device = _device(device)
        model, meta = load_model(run)
        self.batch_size = batch_size
        self.schema, self.objects_definition, self.channel, self.layout = conversion(meta, self.run, source)
        self.names = [*model_scores(model), *(f"hlf:{n}" for n in HLF_NAMES if n not in HLF_SKIPPED)]
        self.default_score = str(meta.get("default_score", "total"))
        self._model: Any = model.to(self.device)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_model"} | {"_model": None}

    @property
    def model(self):
        """The torch model, on :attr:`device` (after unpickling: loaded on first use, once per process)."""
        if self._model is None:
            self._model = _load(self.run, self.device)
        return self._model

    def branches(self) -> list[str]:
        """The branches the events must provide (flat names, e.g. ``Jet_pt``): the collections and MET of the
        source schema; its weight and event number are not read."""
        return _reading_schema(self.schema).branches()

    def __call__(self, events: ak.Array | Mapping[str, Any]) -> ak.Array:
        """Scores of ``N`` events, aligned with them.

        Arguments:
            events: an awkward array of ``N`` events with the source schema's branches, either as flat fields
                (``uproot`` arrays or ``uproot.dask``: ``events["Jet_pt"]``) or as collections of records
                (coffea NanoEvents: ``events.Jet.pt``, ``events.MET.pt``); or a mapping branch -> array (what
                ``TTree.arrays(how=dict)`` returns). Delphes trees work in uproot's flat form (``Jet.PT``).
                A dask-awkward array gives :meth:`dask` of it; a typetracer (dask-awkward's meta) gives the
                typetracer of the output and touches only the branches the conversion reads.

        Returns:
            a record array of length ``N``: float64 fields :attr:`names` (NaN where not ``selected``) and bool
            ``selected`` (the event passes the run's channel and has finite inputs).
        """
        import awkward as ak

        if type(events).__module__.startswith("dask_awkward"):
            return self.dask(events)
        if not isinstance(events, Mapping) and ak.backend(events) == "typetracer":
            for name in self.branches():
                ak.typetracer.touch_data(_field(events, name))
            return ak.Array(self._output(0, {}, np.zeros(0, bool)).layout.to_typetracer(forget_length=True))
        arrays = {name: _field(events, name) for name in self.branches()}
        return self.score_arrays(arrays)

    def score_arrays(self, arrays: Mapping[str, ak.Array], source: str = "awkward events") -> ak.Array:
        """:meth:`__call__` on a mapping branch -> awkward array (every name of :meth:`branches`)."""
        from darkflow.data_prep.convert import convert_selected, drop_nonfinite, nonfinite
        from darkflow.data_prep.features import HLF_NAMES
        from darkflow.data_prep.root_reader import chunk_from_branches
        from darkflow.train.score import hlf_scores

        chunk = chunk_from_branches(arrays, _reading_schema(self.schema), source=source)
        n = len(chunk)
        bad, _ = nonfinite(chunk)
        if bad.any():
            chunk, _ = drop_nonfinite(chunk, "skip")
        converted, passes = convert_selected(chunk, self.objects_definition, self.channel, self.layout)
        selected = np.zeros(n, dtype=bool)
        selected[np.flatnonzero(~bad)[passes]] = True
        scores = self._apply(converted) | hlf_scores(list(HLF_NAMES), converted["hlf"])
        return self._output(n, scores, selected)

    def score_file(self, path: str | os.PathLike, start: int = 0, stop: int | None = None) -> ak.Array:
        """:meth:`__call__` on entries ``[start, stop)`` of the schema's tree in a ROOT file, read in steps of
        :data:`READ_STEP` entries."""
        import awkward as ak

        from darkflow.data_prep.root_reader import check_branches, open_tree

        tree = open_tree(path, self.schema.tree)
        check_branches(tree, self.branches(), path)
        stop = tree.num_entries if stop is None else min(stop, tree.num_entries)
        parts = [self.score_arrays(arrays, str(path)) for arrays in tree.iterate(
            filter_name=self.branches(), step_size=READ_STEP, entry_start=start, entry_stop=max(stop, start),
            library="ak", how=dict)]
        return ak.concatenate(parts) if parts else self._output(0, {}, np.zeros(0, bool))

    def dask(self, events):
        """The scores of a dask-awkward array of events (e.g. ``uproot.dask``): ``dask_awkward.map_partitions``
        of this scorer, one task per partition; only the branches of :meth:`branches` are read."""
        import dask_awkward as dak

        return dak.map_partitions(self, events, label="darkflow-scores")

    def _apply(self, converted: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's scores of the selected events, float64 ``(M,)`` each, batched as ``darkflow score``."""
        from darkflow.train.score import batch_scores

        n = len(converted["objects"])
        out: dict[str, list[np.ndarray]] = {}
        for lo in range(0, n, self.batch_size):
            batch = {k: converted[k][lo:lo + self.batch_size] for k in ("objects", "mask", "hlf")}
            for key, value in batch_scores(self.model, batch, self.device).items():
                out.setdefault(key, []).append(value)
        return {k: np.concatenate(v) for k, v in out.items()}

    def _output(self, n: int, scores: dict[str, np.ndarray], selected: np.ndarray) -> ak.Array:
        import awkward as ak

        columns: dict[str, np.ndarray] = {}
        for name in self.names:
            column = np.full(n, np.nan)
            if name in scores:
                column[selected] = scores[name]
            columns[name] = column
        columns[SELECTED] = selected
        return ak.zip(columns, depth_limit=1)


def _load(run: Path, device: str):
    """The run's model on ``device``, loaded once per process (executors unpickle a scorer for every task)."""
    from darkflow.train.run import load_model_once
    from darkflow.train.rundir import MODEL_FILE

    path = run / MODEL_FILE if run.is_dir() else run
    if not path.is_file():
        raise InputError(f"no trained model at {path} in this process; the run directory must be readable "
                         "wherever the scorer runs (on every Dask worker)")
    return load_model_once(path, device)


def _device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.empty(0, device=device)
    except (RuntimeError, ValueError, AssertionError, NotImplementedError) as err:
        raise InputError(f"device {device!r} cannot be used ({str(err).splitlines()[0]}); give cpu, cuda or "
                         "cuda:N of a GPU this machine has") from None
    return device


def _reading_schema(schema: SourceSchema) -> SourceSchema:
    """The schema without weight and event number: scores need neither (real data has no generator weight)."""
    return schema.model_copy(update={"weight": None, "event_id": None})


def _field(events: Any, name: str):
    """Branch ``name`` of the events: a flat field (``Jet_pt``, ``Jet.PT``) or a collection's field
    (NanoEvents ``Jet.pt`` for ``Jet_pt``)."""
    fields = list(events.keys()) if isinstance(events, Mapping) else events.fields
    if name in fields:
        return events[name]
    for sep in ("_", "."):
        head, found, rest = name.partition(sep)
        if found and head in fields and not isinstance(events, Mapping):
            collection = events[head]
            if rest in collection.fields:
                return collection[rest]
    raise InputError(f"the events have no field {name!r} (nor a collection {name.partition('_')[0]!r} with a field "
                     f"{name.partition('_')[2]!r}); their fields: {', '.join(_short(fields))}; give events of the "
                     "source schema the run was trained on (Scorer.branches() lists what is read)")


def _short(names: list[str], limit: int = 8) -> list[str]:
    return names[:limit] + ([f"... ({len(names) - limit} more)"] if len(names) > limit else [])


def conversion(meta: dict[str, Any], run: Path, source: str | Path | None = None
               ) -> tuple[SourceSchema, ObjectDefinitions, Channel | None, Layout]:
    """The source schema, object definitions, channel and layout the run's training file was prepared with.

    They are read from the training file's attributes where it exists (its complete source schema), else from
    the description stored in the run (``training_file`` in ``model.pt``: :mod:`darkflow.train.provenance`),
    where a source is stored by name and must be built in. ``source`` replaces the schema.
    """
    from darkflow.config import validate
    from darkflow.data_prep import builtin
    from darkflow.data_prep.channels import Channel
    from darkflow.data_prep.layout import Layout
    from darkflow.data_prep.objects import ObjectDefinitions
    from darkflow.data_prep.schema import SourceSchema, load_schema

    attrs, training = _training_attrs(meta)
    for key in ("channel", "objects_definition", "source"):
        if attrs.get(key) is None:
            raise InputError(f"{run}: the run does not record the {key.replace('_', ' ')} its training file was "
                             f"prepared with, and the training file {training} is not found; train it again")
    described = meta["layout"]
    layout = validate(Layout, {k: described[k] for k in ("name", "features", "blocks", "met_row") if k in described},
                      f"{run}: layout")
    if described.get("rows") not in (None, layout.rows):
        raise InputError(f"{run}: the layout's rows do not follow from its blocks; the run is damaged")
    channel_dict = attrs["channel"]
    channel = None if channel_dict.get("name") == "none" and len(channel_dict) == 1 else validate(
        Channel, channel_dict, f"{run}: channel")
    objects_def = validate(ObjectDefinitions, {k: v for k, v in attrs["objects_definition"].items()
                                               if k != "requirements"}, f"{run}: object definitions")
    if source is not None:
        schema = load_schema(builtin.resolve("sources", source))
    elif isinstance(attrs["source"], dict) and "collections" in attrs["source"]:
        schema = validate(SourceSchema, attrs["source"], f"{training}: source")
    else:
        name = attrs["source"]["name"] if isinstance(attrs["source"], dict) else str(attrs["source"])
        if name == "darkmachines":
            raise InputError(f"{run}: the model was trained on Dark Machines CSV events, which have no ROOT branches; "
                             "give `source` (the schema of the events to score, e.g. nanoaod)")
        if name not in builtin.builtin_names("sources"):
            raise InputError(f"{run}: the training file was prepared with source {name!r}, which is not built in, "
                             f"and {training} is not found to read it from; give `source` (its YAML file)")
        schema = load_schema(builtin.resolve("sources", name))
    return schema, objects_def, channel, layout


def _training_attrs(meta: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """``channel``, ``objects_definition`` and ``source`` of the run's training file, and its path."""
    from darkflow.events import EventFile
    from darkflow.train.provenance import source_name

    described = dict(meta.get("training_file") or {})
    path = Path(described.get("path") or meta.get("data") or "")
    if path.is_file():
        with EventFile(path) as events:
            attrs = events.attrs
        for key in ("channel", "objects_definition"):
            if described.get(key) is None:
                described[key] = attrs.get(key)
        if described.get("source") in (None, source_name(attrs.get("source"))):
            described["source"] = attrs.get("source")
    return described, path
