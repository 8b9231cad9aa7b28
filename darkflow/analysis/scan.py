"""``darkflow scan``: metrics at fixed background efficiencies and threshold scans (DESIGN section 5).

For every (signal, score) pair it writes one row of ``metrics.csv`` / ``metrics.json``; thresholds come
from the calibration sample and every efficiency is measured on another sample
(:func:`darkflow.analysis.thresholds.select_roles`); the roles, each with N and N_eff, are recorded in
``metrics.json`` and ``thresholds.json``. ``scan.csv`` lists, for every signal and score, eps_S, eps_B, SI
and expected event counts on a grid of calibration thresholds. For every score it draws, with
:mod:`darkflow.analysis.plots` (PNG and PDF), the ROC of each signal against the test sample
(``roc_SCORE``), the threshold scan (``scan_SCORE``) and the significance improvement (``si_SCORE``);
``SCORE`` is the score's name as a file name (:func:`~darkflow.analysis.plots.file_stem`: ``hlf_MET``).

Conventions:
    - Thresholds and the eps_B they are placed at come from the calibration sample; ``eps_b_test@E`` is the
      efficiency of the SM test sample above the same threshold (a closure check), eps_S that of the signal.
    - The AUC is the signal against the SM test sample, with a Poisson-bootstrap standard deviation
      (``auc_err``). An AUC below 0.5 means the score is inverted for that signal (``note``).
    - Every efficiency has its interval (:func:`darkflow.analysis.metrics.efficiency_above`, 68% CL) and the
      effective number of events behind it; ``n_eff_b_above@E`` is the effective number of calibration
      events above the threshold.
    - Expected counts: weights are in pb and the luminosity in fb^-1, so
      ``n_signal = sum(w_signal above) * lumi * 1000`` and ``n_background = eps_B * sum(w_test) * lumi * 1000``
      with the test sample's weight sum as its cross-section.
    - A working point is resolved when eps_B * N_eff(calibration) >= 10
      (:data:`~darkflow.analysis.metrics.MIN_EFFECTIVE_EVENTS`): refused when the user asked for it with
      ``--eps-b``; with the default list it is written as ``not resolved`` (null in JSON). The scan grid
      marks each point (``resolved``), and ``si_max`` only looks at resolved points.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from darkflow.analysis.metrics import (
    MIN_EFFECTIVE_EVENTS,
    Threshold,
    bootstrap_auc,
    efficiency_above,
    efficiency_curve,
    improvement_summary,
    significance_improvement,
    thresholds_at_efficiencies,
    total_improvement,
    weighted_auc,
)
from darkflow.analysis.thresholds import (
    Roles,
    ScoresFile,
    parse_eps,
    place_thresholds,
    read_scores,
    select_roles,
    thresholds_record,
)
from darkflow.config import Name, StrictModel
from darkflow.errors import InputError
from darkflow.fileio import atomic_output, check_output

FILES = ("metrics.csv", "metrics.json", "scan.csv", "thresholds.json")
"""What ``darkflow scan`` writes into its output folder."""
GRID_POINTS = 60
NOT_RESOLVED = "not resolved"
SCAN_COLUMNS = ["signal", "score", "threshold", "resolved", "eps_b", "eps_b_lo", "eps_b_hi", "n_eff_b_above",
                "eps_s", "eps_s_lo", "eps_s_hi", "si", "n_background", "n_signal", "lumi_fb"]


def eps_label(eps: float) -> str:
    """Column suffix of an efficiency: 1e-2 for 0.01, else the shortest repr (0.05 -> 5e-2)."""
    exponent = math.floor(math.log10(eps))
    mantissa = eps / 10.0**exponent
    if math.isclose(mantissa, round(mantissa), rel_tol=1e-9):
        mantissa = round(mantissa)
    return f"{mantissa:g}e{exponent}"


class ScanConfig(StrictModel):
    """Options of ``darkflow scan``: the scores file, the SM samples' labels, the output folder and what to scan.

    ``eps_b``, ``score`` and ``signals`` are comma-separated lists (``eps_b`` may also be a number or a list).
    The plots are drawn with ``plot_options`` (a YAML as ``analysis/default.yaml``) and ``style``, or not at
    all with ``no_plots``."""

    scores: Name
    background: Name
    out: Name
    calibration: str | None = None
    score: str | None = None
    eps_b: str | None = None
    signals: str | None = None
    lumi: float = 1.0
    replicas: int = 100
    plot_options: Name | None = None
    style: Literal["CMS", "ATLAS", "LHCb", "ALICE"] | None = None
    no_plots: bool = False

    @field_validator("eps_b", mode="before")
    @classmethod
    def _eps_text(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            return repr(float(value))
        if isinstance(value, list):
            return ",".join(repr(float(v)) if isinstance(v, int | float) else str(v) for v in value)
        return value

    @field_validator("eps_b")
    @classmethod
    def _eps_valid(cls, value: str | None) -> str | None:
        parse_eps(value)
        return value

    @field_validator("lumi")
    @classmethod
    def _lumi(cls, value: float) -> float:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError("the integrated luminosity (fb^-1) must be a positive number")
        return value

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int) -> int:
        if value < 2:
            raise ValueError("the bootstrap of the AUC needs at least 2 replicas")
        return value


@dataclass
class ScanResult:
    """What ``darkflow scan`` computed and wrote into ``out``.

    Attributes:
        rows: one row of ``metrics.csv`` per (signal, score).
        thresholds: the content of ``thresholds.json``; ``thresholds_by_score`` the thresholds per score.
        roles: the SM samples and signals with their roles; its warnings are this result's ``warnings``.
        plots: the plot files written into ``out``.
    """

    out: Path
    rows: list[dict[str, Any]]
    thresholds: dict[str, Any]
    thresholds_by_score: dict[str, list[Threshold]]
    signals: list[str]
    scores: list[str]
    roles: Roles
    warnings: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The roles with N and N_eff, then AUC and eps_S (with its interval) per signal and score."""
        keys = [eps_label(t.target) for t in next(iter(self.thresholds_by_score.values()))]
        lines = list(self.roles.lines())
        lines.append(f"{'signal':<22s} {'score':<12s} {'AUC':>15s}" + "".join(f" {'eps_S @ ' + k:>26s}" for k in keys))
        for row in self.rows:
            cells = []
            for key in keys:
                value = row[f"eps_s@{key}"]
                cells.append(NOT_RESOLVED if value is None else
                             f"{value:.3f} [{row[f'eps_s_lo@{key}']:.3f}, {row[f'eps_s_hi@{key}']:.3f}]")
            note = f"  ({row['note']})" if row["note"] else ""
            lines.append(f"{row['signal']:<22s} {row['score']:<12s} {row['auc']:>7.4f} +- {row['auc_err']:.4f}"
                         + "".join(f" {c:>26s}" for c in cells) + note)
        lines.append(f"wrote thresholds.json, metrics.csv, metrics.json, scan.csv and {len(self.plots)} plot file(s) "
                     f"(ROC, threshold scan, SI per score) to {self.out}")
        return lines


def _pick_scores(file: ScoresFile, names: str | None) -> list[str]:
    """The requested scores (comma-separated) or every score all groups have, the default first."""
    if names:
        return [file.score_name(n.strip()) for n in names.split(",") if n.strip()]
    common = set.intersection(*(set(s.scores) for s in file.samples.values()))
    if not common:
        raise InputError(f"{file.path}: the groups share no score name")
    default = [file.default_score] if file.default_score in common else []
    return default + sorted(common - set(default))


def _grid(calib, score: str) -> list[Threshold]:
    """Thresholds at log-spaced calibration efficiencies from 1/N_eff to 1, duplicates removed.

    Points below the resolution limit are kept (``resolved`` False) so that plots can show where it lies.
    """
    n_eff = calib.n_eff
    targets = np.geomspace(min(1.0, 1.0 / n_eff), 1.0, GRID_POINTS)
    seen: set[float] = set()
    out = []
    for t in thresholds_at_efficiencies(calib.scores[score], calib.weight, targets, min_events=1.0):
        if t.resolved and t.value not in seen and t.achieved * n_eff >= 1.0:
            seen.add(t.value)
            out.append(t)
    return out


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _row(roles: Roles, name: str, score: str, thresholds: list[Threshold], replicas: int) -> dict[str, Any]:
    """One metrics row: AUC with its bootstrap error, and each working point with its statistics."""
    sig, test = roles.signals[name], roles.test
    auc = weighted_auc(test.scores[score], sig.scores[score], test.weight, sig.weight)
    spread = bootstrap_auc(test.scores[score], sig.scores[score], test.weight, sig.weight, replicas=replicas)
    row: dict[str, Any] = {"signal": name, "score": score, "auc": auc, "auc_err": float(np.nanstd(spread)),
                           "events_signal": len(sig), "n_eff_signal": sig.n_eff, "n_eff_test": test.n_eff,
                           "n_eff_calibration": roles.calibration.n_eff}
    for thr in thresholds:
        key = eps_label(thr.target)
        eff = efficiency_above(sig.scores[score], sig.weight, thr.value)
        closure = efficiency_above(test.scores[score], test.weight, thr.value)
        calib = efficiency_above(roles.calibration.scores[score], roles.calibration.weight, thr.value)
        ok = thr.resolved
        row |= {f"eps_s@{key}": _num(eff.value), f"eps_s_lo@{key}": _num(eff.low), f"eps_s_hi@{key}": _num(eff.high),
                f"thr@{key}": _num(thr.value), f"eps_b@{key}": _num(thr.achieved),
                f"eps_b_lo@{key}": _num(calib.low) if ok else None, f"eps_b_hi@{key}": _num(calib.high) if ok else None,
                f"n_eff_b_above@{key}": _num(thr.n_eff_above) if ok else None,
                f"eps_b_test@{key}": _num(closure.value) if ok else None,
                f"eps_b_test_lo@{key}": _num(closure.low) if ok else None,
                f"eps_b_test_hi@{key}": _num(closure.high) if ok else None,
                f"si@{key}": _num(float(significance_improvement(eff.value, thr.achieved))) if ok else None,
                f"resolved@{key}": ok}
    notes = []
    if auc < 0.5:
        notes.append(f"inverted: AUC {auc:.3f} < 0.5, the SM test sample scores higher than {name}")
    row["note"] = "; ".join(notes)
    return row


def _scan_points(roles: Roles, name: str, score: str, grid: list[Threshold], lumi_pb: float) -> tuple[list, tuple]:
    """The scan.csv rows of one (signal, score) and the best resolved SI (si, threshold, eps_b)."""
    calib, sig = roles.calibration, roles.signals[name]
    values = np.array([t.value for t in grid])
    eb = efficiency_curve(calib.scores[score], calib.weight, values)
    es = efficiency_curve(sig.scores[score], sig.weight, values)
    si = significance_improvement(es["eps"], eb["eps"])
    resolved = eb["eps"] * calib.n_eff >= MIN_EFFECTIVE_EVENTS
    test_xsec, sig_xsec = float(roles.test.weight.sum()), float(sig.weight.sum())
    rows, best = [], (float("nan"), float("nan"), float("nan"))
    for i, thr in enumerate(values):
        if resolved[i] and np.isfinite(si[i]) and not si[i] <= best[0]:
            best = (float(si[i]), float(thr), float(eb["eps"][i]))
        rows.append({"signal": name, "score": score, "threshold": float(thr), "resolved": bool(resolved[i]),
                     "eps_b": eb["eps"][i], "eps_b_lo": eb["low"][i], "eps_b_hi": eb["high"][i],
                     "n_eff_b_above": eb["n_eff_above"][i], "eps_s": es["eps"][i], "eps_s_lo": es["low"][i],
                     "eps_s_hi": es["high"][i], "si": float(si[i]),
                     "n_background": eb["eps"][i] * test_xsec * lumi_pb, "n_signal": es["eps"][i] * sig_xsec * lumi_pb,
                     "lumi_fb": lumi_pb / 1000.0})
    return rows, best


def scan(options: ScanConfig) -> ScanResult:
    """Run the scan and write ``thresholds.json``, ``metrics.csv``, ``metrics.json``, ``scan.csv`` and the plots.

    The output folder is checked before any work (it may not be the scores file) and its files are written
    all or nothing: they are built in a temporary folder and moved into the folder (created when new; its
    other files are kept) only when every one is complete.
    """
    from darkflow.analysis import plots
    from darkflow.fileio import check_input

    eps_list = parse_eps(options.eps_b)
    if options.plot_options is not None:
        check_input(options.plot_options, "plot options file")
    plot_options = plots.load_options(options.plot_options, style=options.style)
    out = Path(options.out)
    if out.is_dir():
        for name in FILES:
            check_output(out / name, inputs=[options.scores])
    with atomic_output(out, directory=True, merge=True, inputs=[options.scores]) as staging:
        result = _scan(options, eps_list, staging, out, plot_options)
    result.plots = [out / p.name for p in result.plots]
    return result


def _plots(plot_options, roles: Roles, scores: list[str], staging: Path) -> list[Path]:
    """ROC, threshold scan and SI of every score (:mod:`darkflow.analysis.plots`) into ``staging``; the label
    says "Simulation" when every sample drawn is simulated."""
    from darkflow.analysis import plots

    if all(s.simulation for s in [roles.test, *roles.signals.values()]):
        plot_options.simulation = True
    rows = plots.read_scan(staging / "scan.csv")
    written: list[Path] = []
    for score in scores:
        written += plots.roc(roles.test, roles.signals, score, staging, plot_options)
        written += plots.scan_curves(rows, score, staging, plot_options)
        written += plots.si_curves(rows, score, staging, plot_options)
    return written


def _scan(options: ScanConfig, eps_list: list[float], staging: Path, out: Path, plot_options) -> ScanResult:
    file = read_scores(options.scores)
    signals = [n.strip() for n in options.signals.split(",") if n.strip()] if options.signals else None
    roles = select_roles(file, options.background, options.calibration, signals)
    scores = _pick_scores(file, options.score)
    lumi_pb = options.lumi * 1000.0
    calib = roles.calibration

    by_score = {s: place_thresholds(calib, s, eps_list, refuse_unresolved=options.eps_b is not None) for s in scores}
    rows: list[dict[str, Any]] = []
    scan_rows: list[dict[str, Any]] = []
    for score in scores:
        grid = _grid(calib, score)
        for name in roles.signals:
            row = _row(roles, name, score, by_score[score], options.replicas)
            points, best = _scan_points(roles, name, score, grid, lumi_pb)
            scan_rows += points
            row["si_max"], row["thr@si_max"], row["eps_b@si_max"] = (_num(v) for v in best)
            rows.append(row)
    total = {score: total_improvement({r["signal"]: [[r[f"si@{eps_label(e)}"] if r[f"si@{eps_label(e)}"] is not None
                                                      else float("nan") for e in eps_list]]
                                       for r in rows if r["score"] == score}) for score in scores}
    for row in rows:
        row["total_improvement"] = _num(total[row["score"]][row["signal"]])
    summary = {score: improvement_summary(total[score]) for score in scores}

    record = thresholds_record(calib, by_score, file.path, file.default_score)
    record["roles"] = roles.record()
    metrics = {"background": options.background, "calibration": calib.label,
               "calibration_option": options.calibration, "roles": roles.record(),
               "min_effective_events": MIN_EFFECTIVE_EVENTS, "lumi_fb": options.lumi, "eps_b": eps_list,
               "rows": rows, "total_improvement_summary": summary,
               "note": f"null entries: eps_B * N_eff(calibration) < {MIN_EFFECTIVE_EVENTS:g} (not resolved); "
                       "intervals are central 68% Clopper-Pearson on effective counts; auc_err is the standard "
                       f"deviation of {options.replicas} Poisson-bootstrap replicas"}
    (staging / "thresholds.json").write_text(json.dumps(record, indent=2) + "\n")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (staging / "metrics.csv").write_text(_csv(rows), newline="")
    (staging / "scan.csv").write_text(_csv(scan_rows, SCAN_COLUMNS), newline="")
    written = [] if options.no_plots else _plots(plot_options, roles, scores, staging)
    return ScanResult(out, rows, record, by_score, list(roles.signals), scores, roles, list(roles.warnings), written)


def _cell(value: Any) -> str:
    if value is None:
        return NOT_RESOLVED
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return repr(float(value)) if np.isfinite(value) else ""
    return str(value)


def _csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """CSV text of ``rows``; ``None`` cells (unresolved working points) read ``not resolved``."""
    columns = columns or (list(rows[0]) if rows else [])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


