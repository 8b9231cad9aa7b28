"""Reading a scores file, the four Standard Model samples and their roles, thresholds (DESIGN section 5).

Four SM samples, disjoint: training and validation (the run's training file: ``split`` 0 and 1 in the
scores file), calibration (thresholds: the ``--calibration`` group, else, with a warning, the validation
events) and test (AUC, eps_S, eps_B: the ``--background`` group without any event of the other roles).
:func:`select_roles` picks them and refuses overlapping choices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from darkflow.analysis.metrics import (
    MIN_EFFECTIVE_EVENTS,
    Threshold,
    effective_count,
    thresholds_at_efficiencies,
)
from darkflow.errors import InputError
from darkflow.fileio import check_input

META = ("weight", "event_id", "process", "split")
DEFAULT_EPS_B = (1e-2, 1e-3, 1e-4)


@dataclass
class Sample:
    """One group of a scores file (or a selection of its events).

    Attributes:
        label: the group name.
        scores: score name -> (N,) float64.
        weight: (N,) float64 weights in pb; event_id, process, split: (N,) integers.
        process_names: names indexed by ``process``.
        selection: how the events were chosen ("all", "split == 1", ...).
        source: the event file the group was scored from ("" when unknown).
        simulation: whether the event file is simulated (None when unknown).
    """

    label: str
    scores: dict[str, NDArray[np.float64]]
    weight: NDArray[np.float64]
    event_id: NDArray[np.int64]
    process: NDArray[np.int64]
    split: NDArray[np.int64]
    process_names: list[str] = field(default_factory=list)
    selection: str = "all"
    source: str = ""
    simulation: bool | None = None

    def __len__(self) -> int:
        return int(self.weight.size)

    @property
    def n_eff(self) -> float:
        """Effective number of events ``(sum w)^2 / sum w^2``."""
        return effective_count(self.weight)

    def select(self, mask: NDArray[np.bool_], selection: str) -> Sample:
        """The events of ``mask`` (N,) as a new sample described by ``selection``."""
        return Sample(self.label, {k: v[mask] for k, v in self.scores.items()}, self.weight[mask],
                      self.event_id[mask], self.process[mask], self.split[mask], self.process_names, selection,
                      self.source, self.simulation)

    def describe(self) -> dict:
        """Label, selection, N, N_eff and summed weight (pb), for records and tables."""
        return {"label": self.label, "selection": self.selection, "n": len(self), "n_eff": self.n_eff,
                "sum_weight_pb": float(self.weight.sum())}

    def process_name(self, code: int) -> str:
        """The name of process ``code`` (the code itself when the file has no name for it)."""
        return self.process_names[code] if 0 <= code < len(self.process_names) else str(code)


@dataclass
class ScoresFile:
    """All groups of a scores file, its default score name and the run that scored it ("" when unknown)."""

    path: Path
    samples: dict[str, Sample]
    default_score: str
    model: str = ""

    def sample(self, label: str, role: str = "label") -> Sample:
        """The group ``label``; an unknown label is an :class:`InputError` listing the valid ones."""
        if label not in self.samples:
            raise InputError(f"{self.path}: no {role} {label!r}; labels in the file: {', '.join(self.samples)}")
        return self.samples[label]

    def score_name(self, name: str | None) -> str:
        """``name`` or the file's default score, checked against the scores every group has."""
        name = name or self.default_score
        common = set.intersection(*(set(s.scores) for s in self.samples.values()))
        if name not in common:
            raise InputError(f"{self.path}: no score {name!r} in every group; valid scores: "
                             f"{', '.join(sorted(common)) or '(none)'}")
        return name


def read_scores(path: str | Path) -> ScoresFile:
    """Read every group of the scores file written by ``darkflow score``.

    Raises:
        InputError: one line saying what is wrong: the path is missing, a folder, a FIFO or device; the file
            is not HDF5 or is damaged; a group has no dataset ``weight`` or a dataset of the wrong shape or
            type; weights or scores are negative, NaN or infinite (with how many and the first index).
    """
    import h5py

    path = check_input(path, "scores file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file; expected the scores file written by 'darkflow score'")
    samples: dict[str, Sample] = {}
    try:
        with h5py.File(path, "r") as handle:
            default = _text(handle.attrs.get("default_score", "total"))
            model = _text(handle.attrs.get("model", ""))
            for label, group in handle.items():
                if isinstance(group, h5py.Group):
                    samples[label] = _read_group(path, label, group)
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 scores file, truncated or damaged ({err})") from None
    if not samples:
        raise InputError(f"{path}: no score groups; write it with 'darkflow score'")
    return ScoresFile(path, samples, default, model)


def _read_group(path: Path, label: str, group) -> Sample:
    """One group as a :class:`Sample`, every dataset and value checked."""
    import h5py

    where = f"{path}: group {label!r}"
    if "weight" not in group:
        raise InputError(f"{where} has no dataset weight; every group of a scores file needs weight, event_id, "
                         "process and its scores")

    def column(name: str, dtype: type, n: int | None = None) -> np.ndarray:
        item = group[name]
        if not isinstance(item, h5py.Dataset) or item.ndim != 1 or (n is not None and item.shape[0] != n):
            shape = getattr(item, "shape", "a group")
            raise InputError(f"{where}: {name} is {shape}, expected a dataset of shape ({n if n is not None else 'N'},)")
        try:
            return np.asarray(item[:], dtype=dtype)
        except (TypeError, ValueError):
            raise InputError(f"{where}: {name} holds {item.dtype}, expected numbers") from None

    weight = column("weight", np.float64)
    n = weight.size
    _check_values(where, "weights", weight, allow_negative=False)
    scores = {}
    for name, item in group.items():
        if name not in META and isinstance(item, h5py.Dataset) and item.shape == (n,) and item.dtype.kind in "fiub":
            scores[name] = column(name, np.float64, n)
            _check_values(where, f"{name!r} scores", scores[name])
    names = group.attrs.get("process_names", "[]")
    try:
        process_names = [str(x) for x in json.loads(names)] if isinstance(names, str | bytes) else []
    except (ValueError, TypeError):
        raise InputError(f"{where}: attribute process_names is not a JSON list of names") from None
    simulation = group.attrs.get("simulation")
    return Sample(
        label, scores, weight,
        column("event_id", np.int64, n) if "event_id" in group else np.arange(n),
        column("process", np.int64, n) if "process" in group else np.zeros(n, np.int64),
        column("split", np.int64, n) if "split" in group else np.full(n, -1),
        process_names, source=_text(group.attrs.get("source", "")),
        simulation=None if simulation is None else bool(simulation))


def _check_values(where: str, what: str, values: np.ndarray, allow_negative: bool = True) -> None:
    """Refuse NaN, inf (and negative values unless allowed), saying how many and where the first is."""
    for bad, kind in ((~np.isfinite(values), "NaN or infinite"),
                      (np.zeros(0, bool) if allow_negative else np.isfinite(values) & (values < 0), "negative")):
        count = int(np.count_nonzero(bad))
        if count:
            raise InputError(f"{where} has {kind} {what}: {count} of {values.size} (first at index "
                             f"{int(np.flatnonzero(bad)[0])}); the analysis needs finite"
                             + ("" if allow_negative else " non-negative") + f" {what}")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


VALIDATION = "split == 1 (validation events of the training file; they also chose the best epoch)"
NOT_TRAINING = "split != 0 (without the training events)"


@dataclass
class Roles:
    """The SM samples of one analysis and what each is used for.

    Attributes:
        calibration: thresholds are placed on it.
        test: the SM test sample: AUC, eps_B at the thresholds, ROC and score distributions.
        signals: label -> signal sample (eps_S, AUC).
        training: the run's training file group (``split`` 0 / 1 events), or None when not in the file.
        warnings: one line each: what is not as it should be (e.g. calibration on validation events).
    """

    calibration: Sample
    test: Sample
    signals: dict[str, Sample]
    training: Sample | None = None
    warnings: list[str] = field(default_factory=list)

    def record(self) -> dict:
        """Every role with its sample (label, selection, N, N_eff, summed weight), for JSON records."""
        out: dict = {}
        if self.training is not None:
            for name, code in (("training", 0), ("validation", 1)):
                part = self.training.select(self.training.split == code, f"split == {code}")
                out[name] = part.describe()
        out["calibration"] = self.calibration.describe()
        out["test"] = self.test.describe()
        out["signals"] = {k: v.describe() for k, v in self.signals.items()}
        out["warnings"] = list(self.warnings)
        return out

    def lines(self) -> list[str]:
        """A human-readable table of the roles (one line per sample)."""
        out = [f"{'role':<12s} {'label':<22s} {'events':>9s} {'N_eff':>10s}  selection"]
        for role, d in role_rows(self.record()):
            out.append(f"{role:<12s} {d['label']:<22s} {d['n']:>9d} {d['n_eff']:>10.1f}  {d['selection']}")
        return out


def role_rows(record: dict) -> list[tuple[str, dict]]:
    """(role, sample description) pairs of a :meth:`Roles.record`, SM samples first, then each signal."""
    rows = [(k, v) for k, v in record.items() if k not in ("signals", "warnings")]
    return rows + [("signal", v) for v in record.get("signals", {}).values()]


def training_group(scores: ScoresFile) -> Sample | None:
    """The group scored from the run's training file (the one with training events, ``split == 0``)."""
    groups = [s for s in scores.samples.values() if np.any(s.split == 0)]
    return groups[0] if groups else None


def calibration_sample(scores: ScoresFile, calibration: str | None) -> tuple[Sample, list[str]]:
    """The sample thresholds are set on and warnings about it (see :func:`select_roles`)."""
    if calibration is not None:
        group = scores.sample(calibration, "calibration label")
        if not np.any(group.split >= 0):
            return group, []
        calib = group.select(group.split != 0, NOT_TRAINING)
        if len(calib) == 0:
            raise InputError(f"the calibration sample {calibration!r} holds only training events")
        return calib, [f"the calibration sample {calibration!r} is the run's validation split, which also chose the "
                       "best epoch; give an independent SM sample as `calibration`"]
    train = training_group(scores)
    if train is None or not np.any(train.split == 1):
        raise InputError("no `calibration` sample and no validation events (split == 1) in the scores file to "
                         "set thresholds on; score a separate Standard Model file and give its label as "
                         "`calibration`")
    return train.select(train.split == 1, VALIDATION), [
        f"thresholds are set on the validation events of {train.label!r}, which also chose the best epoch; give "
        "an independent SM sample as `calibration`"]


def select_roles(scores: ScoresFile, background: str, calibration: str | None = None,
                 signals: list[str] | None = None) -> Roles:
    """Choose the calibration, test and signal samples and check that they are disjoint.

    - calibration: the ``calibration`` group without training events (``split == 0``); by default the
      validation events (``split == 1``) of the training file, with a warning (they also chose the best
      epoch, so they are not independent of the model).
    - test: the ``background`` group without training events and without the calibration events.
    - signals: ``signals``, else every group that is neither of those nor the training file.

    A choice that leaves the test sample empty, or makes the calibration and test samples share a source
    file, is an :class:`InputError` naming what to pass instead.
    """
    bkg = scores.sample(background, "background label")
    if calibration == background:
        raise InputError(f"`calibration` {calibration!r} is also the `background` (test) sample; thresholds and "
                         "efficiencies need two different SM samples")
    calib, warnings = calibration_sample(scores, calibration)
    train = training_group(scores)
    test = bkg.select(bkg.split != 0, NOT_TRAINING) if np.any(bkg.split == 0) else bkg
    if bkg.label == calib.label:
        test = test.select(test.split != 1, "split == -1 (neither training nor validation events)")
    if len(test) == 0:
        raise InputError(f"the test background {background!r} has no events left once the training and calibration "
                         "events are removed; score a separate Standard Model test file and give its label as "
                         "`background`")
    if calib.source and calib.source == test.source and calib.label != test.label:
        raise InputError(f"the calibration {calib.label!r} and test {test.label!r} samples come from the same event "
                         f"file ({calib.source}); use two independent SM files")
    if np.any(test.split == 1):
        warnings.append(f"the test sample {test.label!r} holds the run's validation events")
    exclude = {background, calib.label} | ({train.label} if train is not None else set())
    if signals:
        for name in signals:
            scores.sample(name, "signal label")
            if name in (background, calib.label):
                raise InputError(f"`signals`: {name!r} is the test background or calibration sample")
        chosen = signals
    else:
        chosen = [label for label in scores.samples if label not in exclude]
        if not chosen:
            raise InputError(f"{scores.path}: no signal groups besides the SM samples ({', '.join(sorted(exclude))}); "
                             "score the signal files too")
    return Roles(calib, test, {k: scores.samples[k] for k in chosen}, train, warnings)


def parse_eps(text: str | None) -> list[float]:
    """Comma-separated efficiencies (default 1e-2,1e-3,1e-4), each in (0, 1)."""
    if not text:
        return list(DEFAULT_EPS_B)
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise InputError(f"`eps_b`: {item!r} is not a number; give e.g. 1e-2,1e-3,1e-4") from None
        if not 0.0 < value < 1.0:
            raise InputError(f"`eps_b`: {item} is not in (0, 1)")
        values.append(value)
    return values


def place_thresholds(sample: Sample, score: str, eps_b: list[float], refuse_unresolved: bool = True) -> list[Threshold]:
    """Thresholds for each of ``eps_b`` on ``sample``; an unresolved eps_B is an :class:`InputError` if asked."""
    n_eff = effective_count(sample.weight)
    if refuse_unresolved:
        bad = [e for e in eps_b if e * n_eff < MIN_EFFECTIVE_EVENTS]
        if bad:
            limit = MIN_EFFECTIVE_EVENTS / max(n_eff, 1e-300)
            raise InputError(f"eps_B = {', '.join(f'{e:g}' for e in bad)} is below {MIN_EFFECTIVE_EVENTS:g}/N_eff = "
                             f"{limit:.3g} of the calibration sample {sample.label!r} ({sample.selection}, N = "
                             f"{len(sample)}, N_eff = {n_eff:.1f}): fewer than {MIN_EFFECTIVE_EVENTS:g} effective events "
                             f"would lie above the threshold; choose eps_B >= {limit:.3g} or calibrate on more events")
    try:
        return thresholds_at_efficiencies(sample.scores[score], sample.weight, eps_b)
    except ValueError as err:
        raise InputError(f"calibration sample {sample.label!r}: {err}") from None


def thresholds_record(sample: Sample, by_score: dict[str, list[Threshold]], source: Path, default: str) -> dict:
    """The ``thresholds.json`` content: each threshold per score and the sample and selection it came from."""
    return {
        "scores_file": str(source),
        "default_score": default,
        "calibration": sample.describe(),
        "rule": "threshold = smallest calibration score with weighted fraction strictly above <= eps_B; "
                f"events with score > threshold are flagged; eps_B * N_eff < {MIN_EFFECTIVE_EVENTS:g} is not "
                "resolved (null)",
        "scores": {score: [{"eps_b": t.target, "threshold": t.value if t.resolved else None,
                            "achieved_eps_b": t.achieved if t.resolved else None,
                            "n_eff_above": t.n_eff_above if t.resolved else None, "resolved": t.resolved}
                           for t in thresholds] for score, thresholds in by_score.items()},
    }
