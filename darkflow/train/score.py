"""``darkflow score``: every event of every input file through a trained model, batched, streamed.

The scores file (DESIGN section 5) has one group per input label with one dataset per score of the model,
one cut baseline ``hlf:NAME`` per high-level feature of the event file (its ``hlf`` column as float64; not
``MET_phi``, an angle is no cut variable), ``weight``, ``event_id``, ``process`` and ``split`` (0 training,
1 validation for events of the training file, -1 otherwise), and attributes ``process_names``, ``source``
(the event file), ``simulation`` (copied from the event file when it has one) and ``role`` (one of
:data:`ROLES`). The file's attributes: ``default_score`` (the model's ``model.default_score``; ``total`` for the baselines), ``model`` and
``training_file``.

Every input is checked against the training file: a different layout is refused; a different channel,
object definitions or source is reported (refused with ``strict``); an input holding events of the
training file (the same file under another path, a copy, or some of its events) gets their roles in
``split`` and is reported.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch

from darkflow.config import Name, at_least_one
from darkflow.dask_cluster import DaskOptions
from darkflow.errors import ConfigError, InputError
from darkflow.events import EventFile
from darkflow.fileio import atomic_output, check_output, same_file
from darkflow.train.dask_score import PART_EVENTS
from darkflow.train.overlap import KeyIndex, event_keys

BATCH = 4096


@torch.no_grad()
def score_file(model: torch.nn.Module, path: str | Path | EventFile, batch_size: int = BATCH,
               indices: np.ndarray | None = None, start: int = 0, stop: int | None = None,
               device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Deterministic scores (posterior mean) of the events of an event file: all, events ``[start, stop)``
    in batches of ``batch_size`` from ``start``, or sorted ``indices``; ``path`` may be an open
    :class:`~darkflow.events.EventFile` (not validated again). ``model`` is on ``device``; the scores come back
    as float64 numpy arrays ``(B,)``, one per score of the model."""
    out: dict[str, list[np.ndarray]] = {}
    events = path if isinstance(path, EventFile) else EventFile(path)
    with events:
        if indices is None:
            stop = events.n_events if stop is None else stop
        n = stop - start if indices is None else len(indices)
        for lo in range(0, n, batch_size):
            if indices is None:
                rows = slice(start + lo, min(start + lo + batch_size, stop))
            else:
                rows = np.sort(indices[lo : lo + batch_size])
            for key, value in batch_scores(model, events.read(rows, ("objects", "mask", "hlf")), device).items():
                out.setdefault(key, []).append(value)
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def batch_scores(model: torch.nn.Module, batch: Mapping[str, np.ndarray],
                 device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Deterministic scores (posterior mean) of one batch, without gradients: ``objects`` ``(B, R, F)``, ``mask``
    ``(B, R)`` and ``hlf`` ``(B, H)`` as stored in an event file -> one float64 ``(B,)`` array per score."""
    with torch.no_grad():
        objects, mask, hlf = (torch.from_numpy(np.ascontiguousarray(batch[k])).to(device)
                              for k in ("objects", "mask", "hlf"))
        return {k: v.double().cpu().numpy() for k, v in model(objects, mask, sample=False, hlf=hlf).items()}


def check_layout(meta: dict, path: Path, layout: dict) -> None:
    """Refuse a file whose layout differs from the one the model was trained on."""
    if layout.get("rows") != meta["layout"].get("rows") or layout.get("features") != meta["layout"].get("features"):
        raise InputError(f"{path}: its layout ({layout.get('name')}) differs from the one the model was trained "
                         f"on ({meta['layout'].get('name')}); prepare it with the same `layout`")


HLF_SKIPPED = ("MET_phi",)
"""High-level features that get no ``hlf:`` cut baseline."""
ROLES = ("training file", "overlaps the training file", "independent of training", "not checked")
"""The ``role`` of a scored input with respect to the model's training file."""


class ScoreWarning(UserWarning):
    """An input differs from, or overlaps, the model's training file (``darkflow score`` prints these)."""


def hlf_scores(names: list[str], hlf: np.ndarray) -> dict[str, np.ndarray]:
    """The one-variable cut baselines: ``{"hlf:NAME": hlf[:, k] as float64}`` except :data:`HLF_SKIPPED`.

    Shapes:
        hlf: ``(N, K)`` with ``K == len(names)``; every value ``(N,)``.
    """
    if hlf.ndim != 2 or hlf.shape[1] != len(names):
        raise InputError(f"the hlf dataset has shape {hlf.shape} but the file names {len(names)} high-level features")
    return {f"hlf:{name}": hlf[:, k].astype(np.float64) for k, name in enumerate(names) if name not in HLF_SKIPPED}


def refuse_overwrite(out: Path, protected: list[Path]) -> None:
    """Refuse an output path that is one of ``protected`` (the same resolved path, or the same inode)."""
    for path in protected:
        if same_file(out, path):
            raise InputError(f"`out` {out} is the input {path}; write the scores to another file")


class _Training:
    """The training file as ``score`` sees it: its description, and its events' keys and roles."""

    def __init__(self, meta: dict[str, Any], split, notify: Callable[[str, str], None]) -> None:
        from darkflow.train.provenance import describe

        self.description = meta.get("training_file")
        self.path = Path(self.description["path"] if self.description else meta.get("data", ""))
        self.known_paths = {str(self.path), os.path.abspath(self.path)}
        if self.description and self.description.get("given_path"):
            self.known_paths.add(self.description["given_path"])
        self.exists = self.path.is_file()
        self.split = split
        self._keys: dict[bool, tuple] = {}
        if not self.exists:
            what = "inputs are not checked for overlaps with it"
            if self.description is None:
                what = "inputs are checked neither against its channel, objects and source nor for overlaps"
            notify("note", f"the training file {self.path} is not found: {what}")
            return
        with EventFile(self.path) as events:
            self.n = events.n_events
            self.has_met = "MET" in events.hlf_names
            if self.description is None:
                self.description = describe(self.path, events.attrs, self.n)
        if split is None:
            notify("note", "the run has no split.npz: events of the training file are all marked as training (0)")

    def roles(self) -> np.ndarray:
        """Role of every training-file event: 0 training, 1 validation (0 for all when the split is unknown)."""
        roles = np.zeros(self.n, dtype=np.int8)
        if self.split is not None:
            roles[self.split["val"]] = 1
        return roles

    def keys(self, with_met: bool) -> tuple[np.ndarray, list[str], KeyIndex]:
        """The training file's event keys (:func:`darkflow.train.overlap.event_keys`), its process names
        and the keys' search index with the events' roles (read once per ``with_met``)."""
        if with_met not in self._keys:
            with EventFile(self.path) as events:
                names = events.process_names
                met = _met(events) if with_met else None
                ids = events.read(None, ("process", "event_id"))
                keys = event_keys(ids["process"], ids["event_id"], met, names, names)
            self._keys[with_met] = (keys, names, KeyIndex(keys, self.roles()))
        return self._keys[with_met]


def _met(events: EventFile) -> np.ndarray | None:
    """The MET column of the high-level features, ``(N,)``, or ``None`` when the file has none."""
    names = events.hlf_names
    if "MET" not in names:
        return None
    column = names.index("MET")
    return np.concatenate([block["hlf"][:, column] for _, block in events.blocks(fields=("hlf",))] or
                          [np.zeros(0, np.float32)])


def _overlap(training: _Training, path: Path, events: EventFile, ids: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    """``split`` of an input (the roles of its training-file events, else -1) and its role's description;
    ``ids`` holds its ``process`` and ``event_id``."""
    if same_file(path, training.path):
        return training.roles(), "same"
    met = _met(events)
    with_met = met is not None and training.has_met
    reference, names, index = training.keys(with_met)
    keys = event_keys(ids["process"], ids["event_id"], met if with_met else None, events.process_names, names)
    if len(keys) == len(reference) and np.array_equal(keys, reference):
        return training.roles(), "copy"
    return index.roles_of(keys), "partial"


def _warn(kind: str, message: str) -> None:
    if kind == "warning":
        warnings.warn(message, ScoreWarning, stacklevel=3)


def score(run: str | Path, inputs: list[str | Path], out: str | Path, strict: bool = False,
          notify: Callable[[str, str], None] | None = None, *, workers: int | None = None,
          dask_scheduler: str | None = None, dask_timeout: float = 10.0, client=None, batch_size: int = BATCH,
          part_events: int | None = None, devices: set[str] | None = None) -> dict[str, int]:
    """Score ``inputs`` with the model of ``run`` into the HDF5 scores file ``out``; returns events per label.

    ``out`` is checked before any work: it may be none of the inputs, the model or the training file (also
    through a symlink, a hard link or another spelling of the path), and its folder must be writable. The
    file is written through :func:`darkflow.fileio.atomic_output`: a failed or interrupted run leaves no new
    file and an existing one unchanged.

    Arguments:
        strict: refuse (``InputError``) an input whose channel, object definitions or source differ from
            the training file's, instead of reporting it.
        notify: called as ``notify(kind, line)`` with kind ``"warning"`` (an input differs from or overlaps
            the training file) or ``"note"`` (a check that could not be made); by default warnings are
            issued as :class:`ScoreWarning` and notes dropped.
        workers, dask_scheduler, dask_timeout, client: score on a Dask cluster
            (:mod:`darkflow.train.dask_score`): a local one of ``workers`` processes, the one at
            ``dask_scheduler`` (reached within ``dask_timeout`` s) or the one of a ``dask.distributed.Client``.
            The file is the single-process one, dataset for dataset (bit for bit at the same torch thread
            count and device, else to float32 round-off); parts of ``part_events`` events
            (default :data:`~darkflow.train.dask_score.PART_EVENTS`, a multiple of ``batch_size``) are scored
            on the workers, on their GPU where they have one, and a local cluster started here is closed
            however the scoring ends.
        batch_size: events per forward pass.
        devices: collects the torch devices the Dask workers scored on.
    """
    import contextlib

    import h5py

    from darkflow.config import validate
    from darkflow.dask_cluster import check_address
    from darkflow.train.provenance import differences
    from darkflow.train.run import load_model

    notify = notify or _warn
    out, inputs = Path(out), [Path(p) for p in inputs]
    model_file = Path(run) / "model.pt" if Path(run).is_dir() else Path(run)
    check_output(out, what="scores file")
    refuse_overwrite(out, [*inputs, model_file])
    cluster = validate(DaskOptions, {"workers": workers, "dask_scheduler": dask_scheduler,
                                     "dask_timeout": dask_timeout}, "")
    parallel = client is not None or cluster.on_cluster
    if batch_size < 1:
        raise ConfigError(f"`batch_size` must be at least 1, got {batch_size}")
    part_events = part_events or max(batch_size, PART_EVENTS // batch_size * batch_size)
    if part_events < 1 or part_events % batch_size:
        raise ConfigError(f"`part_events` must be a positive multiple of `batch_size` ({batch_size}), got "
                          f"{part_events}: a part holds whole batches")
    check_address(cluster.dask_scheduler)
    model, meta = load_model(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    split = np.load(run_dir / "split.npz") if (run_dir / "split.npz").is_file() else None
    training = _Training(meta, split, notify)
    refuse_overwrite(out, [training.path])

    labels: dict[str, EventFile] = {}
    found: list[str] = []
    for path in inputs:
        events = EventFile(path)
        check_layout(meta, path, events.layout)
        label = events.label
        if label in labels:
            raise InputError(f"two inputs have the label {label!r}; prepare one again with another `label`")
        labels[label] = events
        if training.description is not None and not (training.exists and same_file(path, training.path)):
            found += [f"{path}: {phrase}" for phrase in differences(events.attrs, training.description)]
    if strict and found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise InputError(f"{found[0]}{more}; `strict` refuses inputs prepared otherwise than the training file")
    for line in found:
        notify("warning", f"{line}; its scores are not comparable with the training sample's "
                          "(`strict` refuses such inputs)")

    counts: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if parallel:
            from darkflow.dask_cluster import connect
            from darkflow.fileio import scratch_folder
            from darkflow.train.dask_score import score_on_cluster

            scratch = stack.enter_context(scratch_folder(out))  # removed after the cluster is closed
            dask = stack.enter_context(connect(cluster.workers, cluster.dask_scheduler, cluster.dask_timeout, client))
            on_cluster = stack.enter_context(contextlib.closing(score_on_cluster(
                dask.client, model_file, [(str(e.path), e.n_events) for e in labels.values()], scratch, batch_size,
                part_events, devices)))
        tmp = stack.enter_context(atomic_output(out, inputs=[*inputs, model_file, training.path]))
        with h5py.File(tmp, "w") as dest:
            dest.attrs["default_score"] = meta.get("default_score", "total")
            dest.attrs["model"] = str(run)
            dest.attrs["training_file"] = str(training.path)
            for label, events in labels.items():
                path = events.path
                with events:
                    extra = events.read(None, ("weight", "event_id", "process"))
                    baselines = hlf_scores(events.hlf_names, events.read(None, ("hlf",))["hlf"])
                    part, role = np.full(len(extra["weight"]), -1, dtype=np.int8), "not checked"
                    if training.exists:
                        part, how = _overlap(training, path, events, extra)
                        role = _role(how, part)
                        _report_overlap(notify, path, training.path, training.known_paths, how, part)
                    scores = next(on_cluster) if parallel else score_file(model, events, batch_size)
                group = dest.create_group(label)
                for key, value in {**scores, **baselines, **extra}.items():
                    group.create_dataset(key, data=value)
                group.create_dataset("split", data=part)
                group.attrs["process_names"] = json.dumps(events.process_names)
                group.attrs["source"] = str(path)
                group.attrs["role"] = role
                if events.simulation is not None:
                    group.attrs["simulation"] = events.simulation
                counts[label] = len(part)
    return counts


def _role(how: str, part: np.ndarray) -> str:
    if how in ("same", "copy"):
        return ROLES[0]
    return ROLES[1] if (part >= 0).any() else ROLES[2]


def _report_overlap(notify: Callable[[str, str], None], path: Path, training: Path, known: set[str], how: str,
                    part: np.ndarray) -> None:
    """A warning for an input that holds training-file events, unless it is the training file by one of the
    ``known`` absolute paths (the one given to ``train``, or its resolved form)."""
    n_train, n_val = int((part == 0).sum()), int((part == 1).sum())
    if how == "same" and os.path.abspath(path) in known:
        return
    if how == "same":
        what = "it is the training file under another path"
    elif how == "copy":
        what = f"it holds the same {len(part)} events (a copy)"
    elif n_train + n_val:
        what = (f"{n_train + n_val} of its {len(part)} events are events of the training file "
                f"({n_train} training, {n_val} validation)")
    else:
        return
    notify("warning", f"{path}: overlaps the training file {training}: {what}; 'split' marks its training (0) "
                      "and validation (1) events")


def summary(path: str | Path) -> list[dict[str, Any]]:
    """One row per group of a scores file: ``label``, ``events``, ``n_eff`` = (sum w)^2 / sum w^2,
    ``sum_w``, ``mean`` (of the default score) and ``role`` (with its training/validation event counts)."""
    import h5py

    from darkflow.analysis.metrics import effective_count

    rows = []
    with h5py.File(path, "r") as handle:
        name = handle.attrs["default_score"]
        for label, group in handle.items():
            w, split = group["weight"][:], group["split"][:]
            role = str(group.attrs.get("role", ROLES[3]))
            n_train, n_val = int((split == 0).sum()), int((split == 1).sum())
            if role == ROLES[0]:
                role = f"training file ({n_train} training, {n_val} validation)"
            elif role == ROLES[1]:
                role = f"overlaps the training file ({n_train} training, {n_val} validation events)"
            elif role == ROLES[3]:
                role = "not checked (training file not found)"
            rows.append({"label": label, "events": len(w), "n_eff": effective_count(w),
                         "sum_w": float(w.sum()), "mean": float(group[name][:].mean()) if len(w) else float("nan"),
                         "role": role, "score": name})
    return rows


class ScoreConfig(DaskOptions):
    """Options of ``darkflow score``: the run, the event files to score, the scores file, strictness, and the
    Dask cluster to score on (``workers`` or ``dask_scheduler``, :class:`darkflow.dask_cluster.DaskOptions`)."""

    run: Name
    data: Annotated[list[Name], at_least_one("give at least one event file (.h5) to score")]
    out: Name
    strict: bool = False


@dataclass
class ScoreResult:
    """The scores file written, one summary row per label (:func:`summary`), and the warnings of the checks."""

    out: Path
    labels: list[str]
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The file written, then a table: events, N_eff, sum of weights, mean default score, role per label;
        after a Dask run, the devices its workers scored on."""
        rows = {row["label"]: row for row in self.rows}
        name = next(iter(rows.values()))["score"] if rows else "total"
        lines = [f"wrote {self.out}",
                 f"{'label':<20s} {'events':>9s} {'N_eff':>11s} {'sum of weights':>14s} {'mean ' + name:>12s}  role"]
        for label in self.labels:
            r = rows[label]
            lines.append(f"{label:<20s} {r['events']:>9d} {r['n_eff']:>11.1f} {r['sum_w']:>14.5g} "
                         f"{r['mean']:>12.4g}  {r['role']}")
        if self.devices:
            lines.append(f"scored on the Dask workers' {', '.join(self.devices)}")
        return lines


def run(config: ScoreConfig) -> ScoreResult:
    """``darkflow score``: :func:`score` with every warning and note of the checks collected."""
    said: list[str] = []
    devices: set[str] = set()
    labels = score(config.run, list(config.data), config.out, strict=config.strict,
                   notify=lambda kind, line: said.append(line), workers=config.workers,
                   dask_scheduler=config.dask_scheduler, dask_timeout=config.dask_timeout, devices=devices)
    return ScoreResult(Path(config.out), list(labels), summary(config.out), said, sorted(devices))
