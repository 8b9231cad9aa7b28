"""The RESULTS.md section and README headline of ``bench_darkmachines.py``, generated from its JSON.

Every sentence with a number is built from ``benchmarks/results/bench_darkmachines.json``. A difference is
"beyond the seed spread" when it exceeds the two entries' seed standard deviations added in quadrature.
"""

from __future__ import annotations

import math
from typing import Any

METRIC_TITLES = {"auc": "AUC", "eps_s@1e-2": "eps_S @ 1e-2", "eps_s@1e-3": "eps_S @ 1e-3",
                 "total_improvement": "total improvement"}
BASELINES = ("density", "isoforest", "svdd", "hlf_density")
OPTIONS = {"conv_planar_prob": "probabilistic decoder (Cerri et al.)",
           "conv_planar_sym": "symmetry-aware preprocessing (phi relative to the leading object, eta reflection)",
           "conv_planar_hlf": "high-level features as an extra input",
           "conv_planar_warm": "KL and flow warm-up (2 epochs each)"}
MIN_SIGNAL = 100
FLOW_MODELS = ("conv_none_recipe", "conv_planar_recipe", "conv_sylvester-householder_recipe", "conv_maf_recipe")


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/r"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return (f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600
            else f"{seconds // 60} min {seconds % 60:02d} s")


class Index:
    """Lookup of the benchmark's rows: ``(channel, entry, signal|median|mean, metric) -> row``."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.rows = {(r["channel"], r["entry"], r["signal"], r["metric"]): r for r in payload["rows"]}
        self.channels = [c for c in payload["channels"] if c in payload.get("tables", {})]

    def get(self, channel: str, entry: str, signal: str, metric: str) -> dict[str, Any] | None:
        return self.rows.get((channel, entry, signal, metric))

    def value(self, channel: str, entry: str, metric: str, signal: str = "median") -> float | None:
        row = self.get(channel, entry, signal, metric)
        return None if row is None else row["value"]

    def cell(self, channel: str, entry: str, metric: str, signal: str = "median") -> str:
        row = self.get(channel, entry, signal, metric)
        return "–" if row is None else _fmt(row["value"], row.get("std"))

    def signals(self, channel: str) -> list[str]:
        return self.payload["facts"][channel]["signals"]


def default_entry(payload: dict[str, Any]) -> str | None:
    """The entry of the shipped default recipe, when the run has it (``payload['default']``)."""
    return payload.get("default")


def _compare(ix: Index, channel: str, a: str, b: str, metric: str) -> tuple[float, float | None] | None:
    ra, rb = ix.get(channel, a, "median", metric), ix.get(channel, b, "median", metric)
    if ra is None or rb is None or ra["value"] is None or rb["value"] is None:
        return None
    spread = math.hypot(ra["std"], rb["std"]) if ra.get("std") is not None and rb.get("std") is not None else None
    return ra["value"] - rb["value"], spread


def _verdict(diff: tuple[float, float | None] | None) -> str:
    if diff is None:
        return "not comparable (a working point is not resolved)"
    d, spread = diff
    if spread is None:
        return f"{d:+.3f} (one seed: no spread to compare with)"
    return f"{d:+.3f}, " + ("beyond" if abs(d) > spread else "within") + f" the seed spread ({spread:.3f})"


def statements(payload: dict[str, Any]) -> list[str]:
    """The answers to the research questions, one bullet per comparison and channel, on the median eps_S at the
    channel's deepest resolved working point (:func:`working_point`) and on the median AUC."""
    ix = Index(payload)
    lines = []

    def bullets(title: str, pairs: list[tuple[str, str]]) -> None:
        lines.append(f"**{title}** (difference a - b of the medians over the channel's signals):")
        lines.append("")
        for a, b in pairs:
            for c in ix.channels:
                metric = working_point(ix, c)
                if ix.get(c, a, "median", metric) is None or ix.get(c, b, "median", metric) is None:
                    continue
                lines.append(f"- {c}: `{a}` vs `{b}`: {METRIC_TITLES[metric]} {ix.cell(c, a, metric)} vs "
                             f"{ix.cell(c, b, metric)}, {_verdict(_compare(ix, c, a, b, metric))}; AUC "
                             f"{ix.cell(c, a, 'auc')} vs {ix.cell(c, b, 'auc')}, "
                             f"{_verdict(_compare(ix, c, a, b, 'auc'))}")
        lines.append("")

    score = (default_entry(payload) or ":latent_nll").rpartition(":")[2]
    bullets(f"Encoder (the full recipe, score `{score}`)",
            [(f"conv_planar_recipe:{score}", f"graph_planar_recipe:{score}")])
    bullets(f"Flow (the full recipe, score `{score}`)",
            [(f"{m}:{score}", f"conv_none_recipe:{score}") for m in FLOW_MODELS[1:]])
    for s in dict.fromkeys(("total", score)):
        bullets(f"Each option against the previous default `conv_planar` (mse, no warm-up), score `{s}`",
                [(f"{m}:{s}", f"conv_planar:{s}") for m in OPTIONS])
    bullets("The full recipe against the previous default, each with its default score",
            [(f"conv_planar_recipe:{score}", "conv_planar:total")])
    models = sorted({r["model"] for r in payload["rows"] if not r["cut"] and r["score"] != "total"})
    lines.append("**Score** (for every VAE, which of its scores has the best median eps_S at the channel's working "
                 "point, then the best median AUC):")
    lines.append("")
    for c in ix.channels:
        metric = working_point(ix, c)
        wins: dict[str, int] = {}
        for m in models:
            scored = [((ix.value(c, f"{m}:{s}", metric) or -1.0, ix.value(c, f"{m}:{s}", "auc") or -1.0), s)
                      for s in ("total", "reco", "kl", "latent_nll", "combined")
                      if ix.get(c, f"{m}:{s}", "median", metric)]
            if scored:
                best = max(scored)[1]
                wins[best] = wins.get(best, 0) + 1
        if wins:
            lines.append(f"- {c} ({METRIC_TITLES[metric]}): " + ", ".join(
                f"`{s}` best for {n} model(s)" for s, n in sorted(wins.items(), key=lambda kv: -kv[1])))
    lines.append("")
    return lines


def channel_table(ix: Index, channel: str, default: str | None) -> list[str]:
    """Medians (and means) over signals of the default recipe, every baseline, the best fixed and oracle cuts,
    the five best entries, and the published reference points."""
    table = ix.payload["tables"][channel]
    best_cut = table["best_fixed_cut"]
    ranking = table["ranking"]
    shown: list[tuple[str, str]] = []
    if default:
        shown.append((default, "default recipe"))
    models = [e for e in ranking if not e.startswith("hlf:")]
    shown += [(e, "best model of the benchmark" if i == 0 else "") for i, e in enumerate(models[:5]) if e != default]
    shown += [(f"{b}:total", "baseline") for b in BASELINES if ix.get(channel, f"{b}:total", "median", "auc")]
    if best_cut:
        shown.append((best_cut, "best fixed cut"))
    metrics = list(METRIC_TITLES)
    lines = ["| entry | role | " + " | ".join(f"median {METRIC_TITLES[m]}" for m in metrics)
             + " | mean AUC | mean eps_S @ 1e-3 |", "|---" * (len(metrics) + 4) + "|"]
    seen = set()
    for entry, role in shown:
        if entry in seen:
            continue
        seen.add(entry)
        lines.append(f"| `{entry}` | {role} | " + " | ".join(ix.cell(channel, entry, m) for m in metrics)
                     + f" | {ix.cell(channel, entry, 'auc', 'mean')} | {ix.cell(channel, entry, 'eps_s@1e-3', 'mean')} |")
    o = table["oracle_median"]
    lines.append("| oracle cut (best feature per signal) | oracle, not a method | "
                 + " | ".join(_fmt(o[m]) for m in metrics) + " | | |")
    ref = ix.payload["reference"]["dark_machines_best"]
    if channel in ref["auc"]:
        lines.append("| Dark Machines challenge best entries (different data, same protocol; means) | reference | "
                     + " | ".join("" for _ in metrics)
                     + f" | {ref['auc'][channel]:.3f} | {ref['eps_s@1e-3'][channel]:.3f} |")
    return lines


def signal_table(ix: Index, channel: str, default: str | None, metric: str) -> list[str]:
    """One row per signal: ``metric`` for the default recipe, every baseline, the best fixed cut and the oracle."""
    table = ix.payload["tables"][channel]
    entries = ([default] if default else []) + [f"{b}:total" for b in BASELINES
                                                 if ix.get(channel, f"{b}:total", "median", "auc")]
    if table["best_fixed_cut"]:
        entries.append(table["best_fixed_cut"])
    lines = ["| signal | " + " | ".join(f"`{e}`" for e in entries) + " | oracle cut |",
             "|---" * (len(entries) + 2) + "|"]
    for s in ix.signals(channel):
        o = table["oracle"][s]
        lines.append(f"| {s} | " + " | ".join(ix.cell(channel, e, metric, s) for e in entries)
                     + f" | {_fmt(o[metric])} (`{o['cut']}`) |")
    return lines


def working_point(ix: Index, channel: str) -> str:
    """The deepest working point the channel resolves: eps_S at 1e-3 when the calibration sample resolves it for
    every signal (the issue's criterion), 1e-2 otherwise."""
    cut = ix.payload["tables"][channel]["best_fixed_cut"]
    return "eps_s@1e-3" if cut and ix.value(channel, cut, "eps_s@1e-3") is not None else "eps_s@1e-2"


def done_when(ix: Index, default: str | None) -> list[str]:
    """Whether the default recipe's median eps_S reaches the best fixed cut and beats every baseline, at 1e-3
    where the channel resolves it, else at 1e-2 (said so)."""
    if not default:
        return ["No default recipe recorded in this run."]
    lines = []
    for c in ix.channels:
        metric = working_point(ix, c)
        where = "eps_B = 1e-3" if metric == "eps_s@1e-3" else "eps_B = 1e-2 (1e-3 is not resolved in this channel)"
        mine = ix.value(c, default, metric)
        cut = ix.payload["tables"][c]["best_fixed_cut"]
        ref = ix.value(c, cut, metric) if cut else None
        beats = [b for b in BASELINES if ix.get(c, f"{b}:total", "median", metric)]
        lost = [b for b in beats if (ix.value(c, f"{b}:total", metric) or -1) >= (mine if mine is not None else -1)]
        if mine is None:
            auc, cut_auc = ix.value(c, default, "auc"), ix.value(c, cut, "auc") if cut else None
            lines.append(f"- {c}: no working point is resolved (N_eff of the calibration sample "
                         f"{ix.payload['facts'][c]['files']['sm_calibration']['n_eff']:,.0f}); median AUC: default "
                         f"{ix.cell(c, default, 'auc')}, best fixed cut `{cut}` {_fmt(cut_auc)}"
                         + (" (the default is below it)." if auc is not None and cut_auc is not None and auc < cut_auc
                            else "."))
            continue
        spread = ix.get(c, default, "median", metric).get("std")
        cut_text = (f"{'reaches' if ref is not None and mine >= ref else 'does NOT reach'} the best fixed cut "
                    f"`{cut}` ({_fmt(ref)})")
        base_text = ("above every baseline" if not lost else
                     "NOT above " + ", ".join(f"`{b}` ({_fmt(ix.value(c, f'{b}:total', metric))})" for b in lost))
        lines.append(f"- {c}, median eps_S at {where}: default {_fmt(mine, spread)}; {cut_text}; {base_text}.")
    return lines


def section(payload: dict[str, Any] | None, machine_line) -> list[str]:
    lines = ["## Sensitivity on the Dark Machines channels", ""]
    if payload is None:
        return lines + ["Not run yet: `python benchmarks/bench_darkmachines.py`, then "
                        "`python benchmarks/make_results.py`.", ""]
    ix = Index(payload)
    default = default_entry(payload)
    spent = payload.get("seconds_spent", {})
    status = ("complete run" if payload.get("complete") else
              f"**partial run** ({payload['mode']}: {len(payload['models'])} models, {len(payload['seeds'])} "
              f"seed(s), channels {', '.join(payload['channels'])}); not the full benchmark")
    lines += [f"`benchmarks/bench_darkmachines.py` ({status}), {machine_line(payload)}; {payload.get('jobs')} "
              "training job(s) at a time.",
              f"Wall time of the last invocation {_clock(payload['wall_seconds_this_run'])}; work done in all: "
              f"generation {_clock(spent.get('generate', 0))}, preparation {_clock(spent.get('prepare', 0))}, "
              f"training + scoring + scans {_clock(spent.get('unit', 0))}.", "",
              "### Data per channel", "",
              "| channel | SM processes | SM after cuts | N_eff training / calibration / test | signals (events "
              "after cuts) | dropped signals (< 100 events) |", "|---|---|---|---|---|---|"]
    for c, f in payload["facts"].items():
        if f.get("skipped"):
            lines.append(f"| {c} | skipped: {f['skipped']} | | | | |")
            continue
        files = f["files"]
        sig = ", ".join(f"{s} ({files[s]['events']})" for s in f["signals"])
        lines.append(f"| {c} | {', '.join(f['processes'])} | {files['sm_all']['events']:,} | "
                     f"{files['sm_train']['n_eff']:,.0f} / {files['sm_calibration']['n_eff']:,.0f} / "
                     f"{files['sm_test']['n_eff']:,.0f} | {sig} | {', '.join(f['signals_dropped']) or '–'} |")
    lines += ["", "Generated events per process: " + ", ".join(
        f"{p} {n:,}" for group in payload["sizes"]["sm"].values() for p, n in group.items())
        + "; signals " + ", ".join(f"{s} {n:,}" for s, n in payload["sizes"]["signals"].items()) + ".", ""]
    lines += ["### Medians over each channel's signals", "",
              "An entry is `MODEL:SCORE` (mean ± standard deviation over seeds of the median over signals) or a "
              "one-variable cut `hlf:NAME`. The best fixed cut is the one feature with the best median eps_S at "
              "1e-3 over the channel's signals; the oracle picks the best feature per signal and is not a method. "
              "'n/r': a working point not resolved (eps_B * N_eff(calibration) < 10) for some signal.", ""]
    for c in ix.channels:
        lines += [f"#### {c}", ""] + channel_table(ix, c, default) + [""]
    lines += ["### Does the default recipe find what a cut finds?", ""] + done_when(ix, default) + [""]
    empty = [c for c, f in payload["facts"].items() if not f.get("skipped") and not f["signals"]]
    if empty:
        lines += [f"No signal reaches {MIN_SIGNAL} events in {', '.join(empty)}: that channel has no table.", ""]
    lines += ["### Which encoder, flow, option and score win", ""] + statements(payload)
    ref = payload["reference"]["darkflow_2021_chan3_auc"]
    lines += ["Published DarkFlow (2021) chan3 AUCs, on the challenge's own data (different data, same protocol): "
              + ", ".join(f"{k} {v:.3f}" for k, v in ref.items()) + ".", ""]
    lines += ["### Per signal", "", "Mean ± standard deviation over seeds; the cuts have no seeds.", ""]
    for c in ix.channels:
        for metric, title in METRIC_TITLES.items():
            lines += [f"#### {c}: {title}", ""] + signal_table(ix, c, default, metric) + [""]
    costs = payload.get("costs", {})
    if costs:
        lines += ["### Training time per model (mean over channels and seeds)", "",
                  "| model | training (s) | epochs | training events | scoring (s) |", "|---|---|---|---|---|"]
        for m, k in costs.items():
            lines.append(f"| {m} | {k['train_seconds']:.1f} | {k['epochs']:.1f} | {k['train_events']:,.0f} | "
                         f"{k['score_seconds']:.1f} |")
        lines.append("")
    return lines


def headline(payload: dict[str, Any] | None, machine_line) -> list[str]:
    if payload is None:
        return ["Dark Machines channel benchmark not run yet (`python benchmarks/bench_darkmachines.py`)."]
    ix = Index(payload)
    default = default_entry(payload)
    status = "" if payload.get("complete") else f" **Partial run ({payload['mode']}), not the full benchmark.**"
    lines = [f"Median over each channel's signals of eps_S at the deepest working point the channel resolves (and of "
             f"the AUC), {machine_line(payload)}.{status} Full tables: [benchmarks/RESULTS.md](benchmarks/RESULTS.md).",
             "", "| channel | eps_B | default recipe | best fixed cut | oracle cut | " + " | ".join(BASELINES)
             + " | Dark Machines best, eps_S at 1e-3 (AUC); means, other data |", "|---" * (len(BASELINES) + 6) + "|"]
    for c in ix.channels:
        t = payload["tables"][c]
        cut = t["best_fixed_cut"]
        metric = working_point(ix, c)
        resolved = ix.value(c, cut, metric) is not None if cut else False

        def pair(entry: str | None, c: str = c, metric: str = metric) -> str:
            if not entry or ix.get(c, entry, "median", "auc") is None:
                return "–"
            return f"{ix.cell(c, entry, metric)} ({_fmt(ix.value(c, entry, 'auc'))})"

        ref = payload["reference"]["dark_machines_best"]
        published = f"{ref['eps_s@1e-3'][c]:.3f} ({ref['auc'][c]:.3f})" if c in ref["auc"] else "–"
        eps = metric.split("@")[1] if resolved else "none resolved"
        lines.append(f"| {c} | {eps} | {pair(default)} | `{cut}` {pair(cut)} | {_fmt(t['oracle_median'][metric])} "
                     f"({_fmt(t['oracle_median']['auc'])}) | " + " | ".join(pair(f"{b}:total") for b in BASELINES)
                     + f" | {published} |")
    lines += [""] + done_when(ix, default)
    return lines
