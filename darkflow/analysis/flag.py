"""``darkflow flag``: write the events of one sample above a threshold as BSM candidates.

The threshold is either a number (``--threshold``) or placed for a target background efficiency
(``--eps-b``) on a Standard Model calibration sample that is not the sample being flagged: the
``--calibration`` group of the scores file (or, with ``--run``, the ``--calibration`` event file, scored on
the fly), else, with a warning, the validation events of the run's training file, which also chose the
best epoch. Events strictly above the threshold are written, highest score first.

Two forms write the same CSV: :func:`flag` reads an existing scores file (``darkflow score`` output, whose
``hlf:NAME`` datasets hold the high-level features); :func:`flag_events` (DESIGN section 6: ``darkflow flag
--run runs/NAME --data FILE.h5``) scores an event file with a trained model on the fly. Columns: ``event_id``,
``process``, the chosen score then the model's other scores (sorted), ``weight``, then the high-level features
as ``darkflow score`` stores them (every ``hlf`` column but ``MET_phi``, as float64): ``MET``, ``HT``, ``m_eff``
first, then the others (multiplicities ...) sorted by name. The sample is named by its label: the scores
group name, which ``darkflow score`` takes from the event file's ``label`` (else its file name without
suffix), as :attr:`darkflow.events.EventFile.label` does in the ``--run`` form.

The CSV starts with ``#`` lines (``pandas.read_csv(path, comment="#")`` skips them)::

    # threshold=0.8123, eps_B=0.001, calibration=sm_cal, run=runs/conv_maf, score=total
    # sample=zprime, events=500, flagged=21, eps_B_achieved=0.00102, calibration_events=all

``eps_B``, ``eps_B_achieved`` and ``calibration`` read ``none`` for a given threshold; ``calibration_events``
is ``all``, ``validation`` (the run's validation events, which also chose the best epoch) or ``not training``
(a calibration group holding training-file events, those left out).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import field_validator, model_validator

from darkflow.analysis.compare import CUT_PREFIX
from darkflow.analysis.metrics import Threshold, efficiency_above
from darkflow.analysis.thresholds import Sample, calibration_sample, parse_eps, place_thresholds, read_scores
from darkflow.config import Name, StrictModel
from darkflow.errors import InputError
from darkflow.fileio import check_output, write_text_atomic

if TYPE_CHECKING:
    from darkflow.events import EventFile

FIRST_FEATURES = ("MET", "HT", "m_eff")
"""High-level features written first; the others follow sorted by name."""


class FlagConfig(StrictModel):
    """Options of ``darkflow flag``: the sample (``scores`` with ``label``, or ``run`` with ``data``), the CSV to
    write, and the threshold: ``threshold``, or ``eps_b`` on the ``calibration`` sample."""

    run: Name | None = None
    data: Name | None = None
    scores: Name | None = None
    label: Name | None = None
    out: Name
    eps_b: str | None = None
    threshold: float | None = None
    calibration: Name | None = None
    score: str | None = None

    @field_validator("eps_b", mode="before")
    @classmethod
    def _eps_text(cls, value: Any) -> Any:
        return repr(float(value)) if isinstance(value, int | float) else value

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> FlagConfig:
        if (self.eps_b is None) == (self.threshold is None):
            raise ValueError("give exactly one of `eps_b` (a background efficiency) or `threshold` (a score)")
        if self.run is not None:
            if self.data is None or self.scores is not None:
                raise ValueError("with `run` give `data` (an event file), not `scores`; or give `scores` with "
                                 "`label` and no `run`")
        elif self.scores is None or self.label is None:
            raise ValueError("give `scores` (a scores file) with `label`, or `run` (a trained run) with `data`")
        return self


@dataclass
class FlagResult:
    """What ``flag`` did: the threshold used, how it was obtained, the number of candidates, warnings."""

    out: Path
    score: str
    threshold: float
    origin: str
    n_flagged: int
    n_events: int
    warnings: list[str] = field(default_factory=list)
    label: str = ""
    columns: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The threshold and where it came from, then the count of candidates."""
        return [f"threshold {self.score} > {self.threshold:.6g}: {self.origin}",
                f"flagged {self.n_flagged} of {self.n_events} events of {self.label!r} -> {self.out}"]


def run(config: FlagConfig) -> FlagResult:
    """``darkflow flag``: :func:`flag_events` with ``config.run``, else :func:`flag`."""
    if config.run is not None:
        assert config.data is not None
        return flag_events(config.run, config.data, config.out, eps_b=config.eps_b, threshold=config.threshold,
                           score=config.score, calibration=config.calibration)
    assert config.scores is not None and config.label is not None
    return flag(config.scores, config.label, config.out, eps_b=config.eps_b, calibration=config.calibration,
                threshold=config.threshold, score=config.score)


def _origin(calib: Sample, placed: Threshold, score: str) -> str:
    """Where a threshold came from: the calibration sample, its N and N_eff, the achieved eps_B and its interval."""
    eff = efficiency_above(calib.scores[score], calib.weight, placed.value)
    return (f"eps_B = {placed.target:g} on calibration sample {calib.label!r} ({calib.selection}, N = {len(calib)}, "
            f"N_eff = {calib.n_eff:.0f}): achieved {placed.achieved:.3g} [{eff.low:.3g}, {eff.high:.3g}] (68% CL), "
            f"{placed.n_eff_above:.1f} effective events above")


def _above(values: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the events strictly above ``threshold``, highest score first."""
    picked = np.flatnonzero(values > threshold)
    return picked[np.argsort(-values[picked], kind="stable")]


def _feature_order(name: str) -> tuple[int, str]:
    return (FIRST_FEATURES.index(name) if name in FIRST_FEATURES else len(FIRST_FEATURES), name)


@dataclass
class _Placed:
    """A threshold and where it came from (``calib`` None: given as a number)."""

    value: float
    origin: str
    target: float | None = None
    achieved: float | None = None
    calib: Sample | None = None


def _clean(value: object) -> str:
    """A header value without commas or line breaks."""
    return " ".join(str(value).replace(",", ";").split())


def _header(placed: _Placed, run: str, score: str, label: str, n_events: int, n_flagged: int) -> list[str]:
    """The two ``#`` lines of the candidates CSV."""
    calib = placed.calib
    where = "none" if calib is None else "all" if calib.selection == "all" else \
        "validation" if "validation" in calib.selection else "not training"
    first = {"threshold": repr(placed.value), "eps_B": "none" if placed.target is None else repr(placed.target),
             "calibration": "none" if calib is None else calib.label, "run": run or "unknown", "score": score}
    second = {"sample": label, "events": n_events, "flagged": n_flagged,
              "eps_B_achieved": "none" if placed.achieved is None else f"{placed.achieved:.6g}",
              "calibration_events": where}
    return ["# " + ", ".join(f"{k}={_clean(v)}" for k, v in part.items()) for part in (first, second)]


def _write_candidates(out: str | Path, sample: Sample, features: dict[str, np.ndarray], score: str,
                      placed: _Placed, run: str) -> tuple[Path, int, list[str]]:
    """Write the events of ``sample`` above ``placed.value`` (highest ``score`` first) as CSV, atomically.

    Arguments:
        sample: the flagged sample with its model scores (``hlf:`` entries are left out of the score columns
            unless ``score`` is one); features: ``hlf:NAME`` -> (N,) float64, as :func:`hlf_columns`.

    Returns the path, the number of candidates and the columns.
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"output folder does not exist: {out.parent}")
    picked = _above(sample.scores[score], placed.value)
    names = [score] + sorted(k for k in sample.scores if k != score and not k.startswith(CUT_PREFIX))
    feature_keys = sorted(features, key=lambda k: _feature_order(k[len(CUT_PREFIX):]))
    columns = ["event_id", "process", *names, "weight", *(k[len(CUT_PREFIX):] for k in feature_keys)]
    text = io.StringIO()
    text.writelines(line + "\n" for line in _header(placed, run, score, sample.label, len(sample), picked.size))
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for i in picked:
        writer.writerow([int(sample.event_id[i]), sample.process_name(int(sample.process[i])),
                         *(repr(float(sample.scores[k][i])) for k in names), repr(float(sample.weight[i])),
                         *(repr(float(features[k][i])) for k in feature_keys)])
    return write_text_atomic(out, text.getvalue()), int(picked.size), columns


def hlf_columns(sample: Sample) -> dict[str, np.ndarray]:
    """The ``hlf:NAME`` entries of a scores-file sample: its high-level features as ``darkflow score`` stored them."""
    return {k: v for k, v in sample.scores.items() if k.startswith(CUT_PREFIX)}


def flag(scores: str | Path, label: str, out: str | Path, *, eps_b: str | None = None,
         calibration: str | None = None, threshold: float | None = None, score: str | None = None) -> FlagResult:
    """Write the candidates of group ``label`` above the threshold to the CSV ``out`` (atomically)."""
    if (eps_b is None) == (threshold is None):
        raise InputError("give exactly one of `eps_b` or `threshold`")
    check_output(out, [scores])
    file = read_scores(scores)
    sample = file.sample(label, "label")
    name = file.score_name(score)
    warnings: list[str] = []
    if threshold is not None:
        if not np.isfinite(threshold):
            raise InputError(f"`threshold` must be a finite number, got {threshold}")
        placed = _Placed(float(threshold), "given")
    else:
        calib, warnings = calibration_sample(file, calibration)
        if calib.label == label:
            raise InputError(f"the calibration sample {label!r} is the sample being flagged; calibrate on another "
                             "SM sample as `calibration`")
        placed = _place(calib, name, eps_b)
    written, n_flagged, columns = _write_candidates(out, sample, hlf_columns(sample), name, placed, file.model)
    return FlagResult(written, name, placed.value, placed.origin, n_flagged, len(sample), warnings, label, columns)


def _place(calib: Sample, score: str, eps_b: str | None) -> _Placed:
    """The threshold for the one efficiency ``eps_b`` on ``calib``."""
    placed = place_thresholds(calib, score, _one_eps(eps_b))[0]
    return _Placed(placed.value, _origin(calib, placed, score), placed.target, placed.achieved, calib)


def _one_eps(eps_b: str | None) -> list[float]:
    targets = parse_eps(eps_b)
    if len(targets) != 1:
        raise InputError(f"`eps_b`: give one efficiency, got {eps_b}")
    return targets


def _event_sample(model, meta: dict, path: Path | EventFile, selection: str, indices=None) -> Sample:
    """Scores, weights and processes of an event file (or of its ``indices``) as a :class:`Sample` named by
    the file's label; ``path`` may be an open :class:`~darkflow.events.EventFile`."""
    from darkflow.events import EventFile
    from darkflow.train.score import check_layout, score_file

    events = path if isinstance(path, EventFile) else EventFile(path)
    path = events.path
    check_layout(meta, path, events.layout)
    with events:
        part = events.read(None if indices is None else np.sort(indices), ("weight", "process", "event_id"))
        weight = part["weight"].astype(np.float64)
        process = part["process"].astype(np.int64)
        event_id = part["event_id"].astype(np.int64)
        scores = score_file(model, events, indices=indices)
    return Sample(events.label, scores, weight, event_id, process, np.full(weight.size, -1), events.process_names,
                  selection, str(path))


def flag_events(run: str | Path, data: str | Path, out: str | Path, *, eps_b: str | None = None,
                threshold: float | None = None, score: str | None = None,
                calibration: str | Path | None = None) -> FlagResult:
    """Score the event file ``data`` with the model of ``run`` and write the events above the threshold.

    With ``eps_b`` the threshold is placed on the SM event file ``calibration`` (scored with the same model;
    never ``data``), else on the run's validation events with a warning. The CSV is the one :func:`flag`
    writes from a scores file of the same events (see the module docstring).
    """
    from darkflow.events import EventFile
    from darkflow.train.run import load_model
    from darkflow.train.score import hlf_scores

    if (eps_b is None) == (threshold is None):
        raise InputError("give exactly one of `eps_b` or `threshold`")
    check_output(out, [data, *([calibration] if calibration is not None else [])])
    events = EventFile(data)
    model, meta = load_model(run)
    name = score or meta.get("default_score", "total")
    if name not in meta.get("scores", [name]):
        raise InputError(f"unknown score {name!r}; valid: {', '.join(meta['scores'])}")
    warnings: list[str] = []
    if threshold is not None:
        placed = _Placed(float(threshold), "given")
    else:
        _one_eps(eps_b)
        if calibration is not None:
            path = Path(calibration)
            if path.is_file() and path.resolve() == Path(data).resolve():
                raise InputError("`calibration` is the file being flagged; calibrate on another SM event file")
            calib = _event_sample(model, meta, path, "all")
        else:
            run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
            if not (run_dir / "split.npz").is_file():
                raise InputError(f"{run_dir} has no split.npz: give `calibration` (an SM event file) or `threshold`")
            val = np.sort(np.load(run_dir / "split.npz")["val"])
            data_path = Path((meta.get("training_file") or {}).get("path") or meta["data"])
            calib = _event_sample(model, meta, data_path,
                                  "the run's validation events (they also chose the best epoch)", indices=val)
            calib.weight = np.abs(calib.weight)
            warnings.append("thresholds are set on the run's validation events, which also chose the best epoch; "
                            "give an independent SM event file as `calibration`")
        placed = _place(calib, name, eps_b)
    sample = _event_sample(model, meta, events, "all")
    with events:
        features = hlf_scores(events.hlf_names, events.read(None, ("hlf",))["hlf"])
    written, n_flagged, columns = _write_candidates(out, sample, features, name, placed, str(run))
    return FlagResult(written, name, placed.value, placed.origin, n_flagged, len(sample), warnings, sample.label,
                      columns)
