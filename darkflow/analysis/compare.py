"""Several models and the one-variable cut baselines side by side, with their uncertainties (Markdown).

The input is the ``metrics.json`` of ``darkflow scan`` for each model (and one for the ``hlf:`` cut
scores, which need no training). For every signal one table lists each model and each cut: the AUC with
its bootstrap standard deviation and eps_S at each working point with its 68% interval. The best value
of a column is bold; a value consistent with the best within the uncertainties is marked ``≈``: the
difference is not significant. The marking is conservative: the models are evaluated on the same events,
so their values are positively correlated and the uncertainty of a difference is smaller than the
quadrature sum used here (AUC) or than the interval overlap (eps_S).

Two cut rows are labelled as in the Dark Machines practice of quoting simple baselines: the *best fixed
cut* (one feature for every signal: the best median over signals of eps_S at the deepest resolved working
point) and, per signal, the *oracle* cut (the best feature for that signal, chosen knowing the signal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CUT_PREFIX = "hlf:"
APPROX = "≈"


@dataclass
class Entry:
    """One row source: a model (``cut`` False) or a cut baseline, with its scan rows by signal."""

    name: str
    rows: dict[str, dict[str, Any]]
    cut: bool = False


def entries_from_metrics(name: str, metrics: dict[str, Any], score: str) -> Entry:
    """The rows of ``score`` in one ``metrics.json`` as an :class:`Entry` named ``name``."""
    rows = {r["signal"]: r for r in metrics["rows"] if r["score"] == score}
    return Entry(name, rows, cut=score.startswith(CUT_PREFIX))


def cut_entries(metrics: dict[str, Any]) -> list[Entry]:
    """One :class:`Entry` per ``hlf:`` score of a ``metrics.json`` (named after the feature)."""
    names = sorted({r["score"] for r in metrics["rows"] if r["score"].startswith(CUT_PREFIX)})
    return [entries_from_metrics(n, metrics, n) for n in names]


def _value(row: dict[str, Any] | None, key: str) -> float:
    value = None if row is None else row.get(key)
    return float(value) if isinstance(value, int | float) and np.isfinite(value) else float("nan")


def best_fixed_cut(cuts: list[Entry], signals: list[str], eps_key: str) -> str | None:
    """The cut with the best median eps_S@``eps_key`` over ``signals`` (ties: the better median AUC)."""
    best, key = None, (-np.inf, -np.inf)
    for entry in cuts:
        eps = [_value(entry.rows.get(s), f"eps_s@{eps_key}") for s in signals]
        auc = [_value(entry.rows.get(s), "auc") for s in signals]
        score = (np.nanmedian(eps) if np.isfinite(eps).any() else -np.inf,
                 np.nanmedian(auc) if np.isfinite(auc).any() else -np.inf)
        if score > key:
            best, key = entry.name, score
    return best


def oracle_cut(cuts: list[Entry], signal: str, eps_key: str) -> str | None:
    """The cut with the best eps_S@``eps_key`` for one signal (ties: the better AUC)."""
    scored = [((_value(e.rows.get(signal), f"eps_s@{eps_key}"), _value(e.rows.get(signal), "auc")), e.name)
              for e in cuts]
    scored = [((np.nan_to_num(a, nan=-1.0), np.nan_to_num(b, nan=-1.0)), n) for (a, b), n in scored]
    return max(scored)[1] if scored else None


def deepest_resolved(entries: list[Entry], eps_keys: list[str]) -> str:
    """The smallest working point that at least one row resolves (the first key otherwise)."""
    for key in reversed(eps_keys):
        if any(r.get(f"resolved@{key}") for e in entries for r in e.rows.values()):
            return key
    return eps_keys[0]


def _auc_cell(row: dict[str, Any] | None) -> tuple[str, float, float]:
    auc, err = _value(row, "auc"), _value(row, "auc_err")
    if not np.isfinite(auc):
        return "–", np.nan, np.nan
    return f"{auc:.3f} ± {err:.3f}", auc, err


def _eps_cell(row: dict[str, Any] | None, key: str) -> tuple[str, float, float, float]:
    if row is None:
        return "–", np.nan, np.nan, np.nan
    if not row.get(f"resolved@{key}", False):
        return "not resolved", np.nan, np.nan, np.nan
    eps, lo, hi = (_value(row, f"{k}@{key}") for k in ("eps_s", "eps_s_lo", "eps_s_hi"))
    return f"{eps:.3f} [{lo:.3f}, {hi:.3f}]", eps, lo, hi


def _mark(cells: list[str], values: list[float], consistent: list[bool]) -> list[str]:
    """Bold the best finite value; prefix the values consistent with it by ≈."""
    finite = [i for i, v in enumerate(values) if np.isfinite(v)]
    if not finite:
        return cells
    best = max(finite, key=lambda i: values[i])
    out = list(cells)
    for i in finite:
        if i == best:
            out[i] = f"**{cells[i]}**"
        elif consistent[i]:
            out[i] = f"{APPROX} {cells[i]}"
    return out


def signal_rows(entries: list[Entry], signal: str, eps_keys: list[str],
                labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one signal's table: one row per entry (``labels`` adds a note to a row name)."""
    header = ["model or cut", "AUC"] + [f"eps_S @ eps_B = {k}" for k in eps_keys]
    columns: list[list[str]] = []
    aucs = [_auc_cell(e.rows.get(signal)) for e in entries]
    best_auc = max((i for i, a in enumerate(aucs) if np.isfinite(a[1])), key=lambda i: aucs[i][1], default=None)
    consistent = [best_auc is not None and np.isfinite(a[1])
                  and abs(a[1] - aucs[best_auc][1]) <= np.hypot(a[2], aucs[best_auc][2]) for a in aucs]
    columns.append(_mark([a[0] for a in aucs], [a[1] for a in aucs], consistent))
    for key in eps_keys:
        cells = [_eps_cell(e.rows.get(signal), key) for e in entries]
        best = max((i for i, c in enumerate(cells) if np.isfinite(c[1])), key=lambda i: cells[i][1], default=None)
        consistent = [best is not None and np.isfinite(c[1]) and c[3] >= cells[best][2] for c in cells]
        columns.append(_mark([c[0] for c in cells], [c[1] for c in cells], consistent))
    rows = []
    for i, entry in enumerate(entries):
        name = f"`{entry.name}`" if entry.cut else entry.name
        note = labels.get(entry.name, "")
        rows.append([f"{name}{' (' + note + ')' if note else ''}", *(c[i] for c in columns)])
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def signal_table(entries: list[Entry], signal: str, eps_keys: list[str], labels: dict[str, str]) -> list[str]:
    """Markdown lines of :func:`signal_rows`."""
    return _markdown(*signal_rows(entries, signal, eps_keys, labels))


def threshold_table(models: dict[str, dict[str, Any]], score: str | dict[str, str], eps_keys: list[str]) -> list[str]:
    """Markdown lines: per model and working point, the calibration threshold's statistics and the test closure.

    ``models`` maps a model name to its ``metrics.json``; ``score`` is the score of every model, or one per model
    name; the values do not depend on the signal.
    """
    header = ["model"] + [f"eps_B = {k}: calibration (N_eff above) / test" for k in eps_keys]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, metrics in models.items():
        wanted = score[name] if isinstance(score, dict) else score
        row = next((r for r in metrics["rows"] if r["score"] == wanted), None)
        cells = []
        for key in eps_keys:
            if row is None or not row.get(f"resolved@{key}"):
                cells.append("not resolved")
                continue
            above, calib = _value(row, f"n_eff_b_above@{key}"), _value(row, f"eps_b@{key}")
            test, lo, hi = (_value(row, f"{k}@{key}") for k in ("eps_b_test", "eps_b_test_lo", "eps_b_test_hi"))
            cells.append(f"{calib:.2e} ({above:.1f}) / {test:.2e} [{lo:.2e}, {hi:.2e}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def roles_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: every SM sample and signal of a roles record with its role, selection, N, N_eff and
    summed weight."""
    from darkflow.analysis.thresholds import role_rows

    header = ["role", "sample", "selection", "events", "N_eff", "sum of weights (pb)"]
    return header, [[role, d["label"], d["selection"], f"{d['n']:,}", f"{d['n_eff']:,.0f}", f"{d['sum_weight_pb']:.4g}"]
                    for role, d in role_rows(record)]


def roles_table(record: dict[str, Any]) -> list[str]:
    """Markdown lines of :func:`roles_rows`."""
    return _markdown(*roles_rows(record))
