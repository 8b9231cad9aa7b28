"""Build ``benchmarks/RESULTS.md`` from ``benchmarks/results/*.json`` (what the bench scripts record).

Nothing here is typed by hand: every number comes from a JSON file written by a script in ``benchmarks/``
through ``_record.record``. A script whose JSON is missing reads "not run yet". The physics headline table
(AUC per model and signal) is also copied into the README between ``<!-- physics-table -->`` and
``<!-- /physics-table -->``.

Usage: ``python benchmarks/make_results.py [--results DIR] [--out RESULTS.md] [--readme README.md|none]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COMPUTE_SCRIPTS = ("bench_prepare", "bench_generate", "bench_flows", "bench_train")
METRIC_TITLES = {"auc": "AUC (signal against the held-out SM test file)",
                 "eps_s@1e-2": "eps_S at eps_B = 1e-2", "eps_s@1e-3": "eps_S at eps_B = 1e-3"}
BEGIN, END = "<!-- physics-table -->", "<!-- /physics-table -->"
DM_BEGIN, DM_END = "<!-- darkmachines-table -->", "<!-- /darkmachines-table -->"
PHYSICS_SCRIPTS = ("bench_physics", "bench_darkmachines")


def load(results: Path) -> dict[str, dict[str, Any]]:
    """Every ``results/*.json`` by script name."""
    out = {}
    for path in sorted(results.glob("*.json")):
        payload = json.loads(path.read_text())
        if isinstance(payload, dict) and "script" in payload and "rows" in payload:
            out[payload["script"]] = payload
    return out


def machine_line(payload: dict[str, Any]) -> str:
    m = payload.get("machine", {})
    parts = [f"{m.get('cores', '?')} cores ({m.get('cpu', '?')})", f"{m.get('memory_gib', '?')} GiB",
             f"Python {m.get('python', '?')}"]
    if m.get("torch"):
        parts.append(f"torch {m['torch']}, {m.get('torch_threads', '?')} threads")
    parts.append(f"GPU: {m['gpu']} (present, not used unless stated)" if m.get("gpu") else "no GPU")
    if m.get("note"):
        parts.append(m["note"])
    return f"{payload.get('date', '?')}, " + ", ".join(parts)


def _reference(value: Any) -> str:
    """A reference cell: numbers with three significant digits, text as it is, nothing for ``None``."""
    if value is None or value == "":
        return ""
    return number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def number(value: Any, digits: int = 3) -> str:
    """A figure as text: thousands separators for large values, ``digits`` significant digits otherwise."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    return f"{value:.{max(digits - 1 - int(math.floor(math.log10(abs(value)))), 0)}f}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600 else f"{seconds // 60} min {seconds % 60:02d} s"


# ------------------------------------------------------------------------------------------- physics


def _index(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["model"], r["signal"], r["metric"]): r for r in rows}


def cell(row: dict[str, Any] | None) -> str:
    """``mean ± std (stat)`` (3 decimals); 'n/r' when no seed resolved the working point."""
    if row is None:
        return "–"
    if row["value"] is None:
        return "n/r"
    text = f"{row['value']:.3f}"
    if row.get("std") is not None:
        text += f" ± {row['std']:.3f}"
    if row.get("stat") is not None:
        text += f" ({row['stat']:.3f})"
    if row.get("n_resolved", row.get("n_seeds")) != row.get("n_seeds"):
        text += f" ({row['n_resolved']}/{row['n_seeds']} seeds)"
    return text


def table(payload: dict[str, Any], metric: str) -> list[str]:
    """Markdown table: one row per model, one column per signal."""
    by = _index(payload["rows"])
    signals = payload["signals"]
    lines = ["| model | " + " | ".join(signals) + " |", "|---" * (len(signals) + 1) + "|"]
    for model in payload["models"]:
        lines.append(f"| {model} | " + " | ".join(cell(by.get((model, s, metric))) for s in signals) + " |")
    for cut in payload.get("cuts", []):
        lines.append(f"| cut `{cut}` | " + " | ".join(cell(by.get((cut, s, metric))) for s in signals) + " |")
    return lines


def _diff(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[float, float | None] | None:
    """(a - b, combined seed spread) or None when either is missing."""
    if a is None or b is None or a["value"] is None or b["value"] is None:
        return None
    spread = (math.hypot(a["std"], b["std"]) if a.get("std") is not None and b.get("std") is not None else None)
    return a["value"] - b["value"], spread


def flow_statements(payload: dict[str, Any], metric: str) -> list[str]:
    """For every flow: how it compares with the same encoder without a flow, signal by signal."""
    by = _index(payload["rows"])
    signals = payload["signals"]
    out = []
    verdicts: dict[str, list[str]] = {"help": [], "hurt": [], "neutral": []}
    for model in payload["models"]:
        encoder, _, flow = model.partition("_")
        base = f"{encoder}_none"
        if encoder not in ("conv", "graph") or flow == "none" or base not in payload["models"]:
            continue
        diffs = {s: _diff(by.get((model, s, metric)), by.get((base, s, metric))) for s in signals}
        diffs = {s: d for s, d in diffs.items() if d is not None}
        if not diffs:
            continue
        up = [s for s, (d, _) in diffs.items() if d > 0]
        beyond_up = [s for s, (d, sp) in diffs.items() if sp is not None and d > sp]
        beyond_down = [s for s, (d, sp) in diffs.items() if sp is not None and -d > sp]
        mean = sum(d for d, _ in diffs.values()) / len(diffs)
        detail = ", ".join(f"{s} {d:+.3f}" + (f" (spread {sp:.3f})" if sp is not None else "")
                           for s, (d, sp) in diffs.items())
        have_spread = any(sp is not None for _, sp in diffs.values())
        if have_spread:
            beyond = (f"beyond the seed spread: better on {len(beyond_up)} ({', '.join(beyond_up) or 'none'}), "
                      f"worse on {len(beyond_down)} ({', '.join(beyond_down) or 'none'})")
        else:
            beyond = "one seed only, so no seed spread to compare with"
        out.append(f"- **{encoder} + {flow}** vs {encoder} without flow: higher on {len(up)} of {len(diffs)} "
                   f"signals, mean difference {mean:+.3f}; {beyond}. Per signal: {detail}.")
        key = ("help" if len(beyond_up) > len(diffs) / 2 and not beyond_down else
               "hurt" if len(beyond_down) > len(diffs) / 2 and not beyond_up else "neutral")
        verdicts[key].append(f"{encoder} + {flow}")
    if out and not any(r.get("std") is not None for r in payload["rows"]):
        name = METRIC_TITLES.get(metric, metric).split(" (")[0]
        out = [f"{name}: one seed only, so the differences below are not judged against a seed spread.", ""] + out
    elif out:
        name = METRIC_TITLES.get(metric, metric).split(" (")[0]
        summary = (f"In short ({name}): flows that help beyond the seed spread on most signals: "
                   f"{', '.join(verdicts['help']) or 'none'}; that hurt on most: {', '.join(verdicts['hurt']) or 'none'}; "
                   f"the others ({len(verdicts['neutral'])}) are not clearly different from no flow.")
        out = [summary, ""] + out
    return out


def best_statements(payload: dict[str, Any]) -> list[str]:
    """Best model per signal (AUC), and the baselines against the best VAE."""
    by = _index(payload["rows"])
    out = []
    for signal in payload["signals"]:
        ranked = sorted(((by[(m, signal, "auc")]["value"], m) for m in payload["models"]
                         if by.get((m, signal, "auc")) and by[(m, signal, "auc")]["value"] is not None), reverse=True)
        if not ranked:
            continue
        best_auc, best = ranked[0]
        vaes = [(v, m) for v, m in ranked if m.startswith(("conv_", "graph_"))]
        text = f"- {signal}: best AUC {best_auc:.3f} ({best})"
        if vaes and best not in ("density", "isoforest"):
            text += f", worst VAE {vaes[-1][0]:.3f} ({vaes[-1][1]})"
        for baseline in ("density", "isoforest"):
            row = by.get((baseline, signal, "auc"))
            if row and row["value"] is not None and vaes:
                text += f"; {baseline} {row['value']:.3f} ({row['value'] - vaes[0][0]:+.3f} vs the best VAE)"
        out.append(text + ".")
    return out


def physics_section(payload: dict[str, Any] | None) -> list[str]:
    lines = ["## Physics: anomaly detection on generated LHC events", ""]
    if payload is None:
        return lines + ["Not run yet: `make bench-physics` (about 75 minutes on 2 cores) writes "
                        "`benchmarks/results/bench_physics.json`, then `python benchmarks/make_results.py`.", ""]
    facts, sizes = payload["facts"], payload["sizes"]
    status = ("complete run" if payload.get("complete") else
              f"**partial run** ({payload['mode']}: {len(payload['models'])} models, {len(payload['seeds'])} seed(s)); "
              "not the full benchmark")
    spent = payload.get("seconds_spent", {})
    lines += [f"`benchmarks/bench_physics.py` ({status}), {machine_line(payload)} in the main process; "
              f"{payload.get('jobs', 1)} training job(s) at a time with {payload.get('threads_per_job', '?')} torch "
              "thread(s) each.",
              f"Wall time of the last invocation {_clock(payload['wall_seconds_this_run'])}; work done in all "
              f"(resumed runs add up): generation {_clock(spent.get('generate', 0))}, preparation "
              f"{_clock(spent.get('prepare', 0))}, training + scoring + scans {_clock(spent.get('models', 0))}."]
    cores = payload.get("machine", {}).get("cores") or 1
    if payload.get("threads_per_job") == 1 and cores > 2 and spent:
        gen2 = spent.get("generate", 0) * cores / 2
        models2 = spent.get("models", 0) / 2
        lines += ["", f"On a 2-core CPU (generation with 2 workers, two one-thread training jobs) the same work takes "
                  f"about {_clock(gen2 + spent.get('prepare', 0) + models2)}: generation at most "
                  f"{_clock(gen2)} (its wall time here times its {cores} workers, halved), models "
                  f"{_clock(models2)} (the sum of the one-thread run times, halved); the target is 2 hours."]
    lines += [""]
    files = facts["files"]
    lines += ["### Data", "",
              f"SM mixture generated with `darkflow generate` (Pythia 8, 13 TeV), weighted by cross-section "
              f"(each event sigma * w / sum(w), in pb), after the channel `{facts['channel']}` "
              f"(definition at the end): {files['sm_all']['events']:,} of {facts['sm_read']:,} events "
              f"(N_eff = {files['sm_all']['n_eff']:,.0f}).", "",
              "| SM process | generated | after channel | sigma after channel (pb) | N_eff |", "|---|---|---|---|---|"]
    for name, p in facts["processes"].items():
        lines.append(f"| {name} | {number(p['generated'])} | {p['selected']:,} | {number(p['sigma_after_channel_pb'])} "
                     f"| {number(p['n_eff'])} |")
    test = files["sm_test"]
    calib = files.get("sm_calibration")
    if calib is None:  # a run of the earlier protocol: thresholds on the test file itself
        split = (f"and `sm_test` {test['events']:,} events (N_eff = {test['n_eff']:,.0f}) on which the thresholds "
                 "are set **and** the AUC is computed (an earlier protocol: calibration and test were one sample)")
    else:
        resolved = ", ".join(e for e in ("1e-2", "1e-3", "1e-4") if float(e) * calib["n_eff"] >= 10)
        split = (f"`sm_calibration` {calib['events']:,} events (N_eff = {calib['n_eff']:,.0f}) on which the "
                 f"thresholds are set, and `sm_test` {test['events']:,} events (N_eff = {test['n_eff']:,.0f}) on "
                 "which the AUC, eps_S and eps_B are measured: four disjoint SM samples. Resolved working points "
                 f"(eps_B * N_eff(calibration) >= 10): {resolved or 'none'}")
    lines += ["", f"A fixed split (seed independent): `sm_train` {files['sm_train']['events']:,} events for training "
              f"(each run splits {sizes['train_events']:,} into 80% training and 20% validation with its own seed), "
              f"{split}. Signals (after the same channel):", "",
              "| signal | generated | after channel |", "|---|---|---|"]
    for name in payload["signals"]:
        f = files[name]
        lines.append(f"| {name} | {number(f.get('generated'))} | {f['events']:,} |")
    configs = payload.get("model_configs", {})
    training = next(iter(configs.values()), {}).get("training", {})
    lines += ["", "### Training", "",
              f"Each model is trained on the SM training file only, at most {sizes['epochs']} epochs with early "
              f"stopping (patience {sizes['patience']}) on the validation loss, batch {sizes['batch_size']}, "
              f"learning rate {training.get('learning_rate', '?')}, event weights `{training.get('event_weights', '?')}`; "
              f"seeds {', '.join(map(str, payload['seeds']))} (the seed changes the initialisation and the "
              "training/validation split; the data are the same). Score: `total` (the VAE loss; -log p(x) for the "
              "density; the isolation score for the forest). The models (the `model` section of the resolved "
              "configs; the VAEs take each flow in turn, with these `flow_options`):", ""]
    for name, config in configs.items():
        lines.append(f"- `{name}`: `{json.dumps(config.get('model', {}))}`")
    lines += ["", "Every number below is the mean ± the standard deviation over the seeds, followed in parentheses "
              "by the statistical uncertainty of one seed's value (the AUC's Poisson-bootstrap deviation; half the "
              "68% interval of eps_S) where the run recorded it; 'n/r': the working point is not resolved "
              "(eps_B * N_eff of the calibration sample below 10) in any seed. Rows `cut hlf:NAME` score every "
              "event by one high-level feature, with no training (the baseline a physicist tries first).", ""]
    for metric in ("auc", "eps_s@1e-2", "eps_s@1e-3"):
        lines += [f"### {METRIC_TITLES[metric]}", ""] + table(payload, metric) + [""]
    lines += ["### What the numbers say", "", "Generated from the tables above (a difference is 'beyond the seed "
              "spread' when it exceeds the two models' standard deviations added in quadrature).", ""]
    for metric in ("auc", "eps_s@1e-3"):
        lines += flow_statements(payload, metric) + [""]
    lines += ["Best models per signal:", ""] + best_statements(payload) + [""]
    costs = payload.get("costs", {})
    if costs:
        lines += ["### Cost per model (mean over seeds, seconds)", "", "| model | training | epochs | scoring |",
                  "|---|---|---|---|"]
        for model, c in costs.items():
            lines.append(f"| {model} | {number(c['train_seconds'], 2)} | {c['epochs']:.1f} | "
                         f"{number(c['score_seconds'], 2)} |")
        lines.append("")
    ext = payload.get("extrapolation")
    if ext:
        lines += ["### Expected time of the full benchmark (`--estimate`)", "",
                  f"From two epochs and one scoring pass of every model on a slice of this run's training file "
                  f"(one torch thread each) and a generation rate, for the full sizes ({ext['events_generated']:,} "
                  f"events generated, {ext['seeds']} seeds, {ext['cores']} cores with one job per core; every run "
                  "at its maximum number of epochs):", "",
                  "| estimate | generation | preparation | models | total |", "|---|---|---|---|---|"]
        for kind, what in (("wall", f"wall times measured here (load average {ext.get('load_average', 0):.1f})"),
                           ("cpu", "CPU times (the same machine with nothing else running)")):
            t = ext[kind]
            lines.append(f"| {what} | {_clock(t['generation'])} | {_clock(t['prepare'])} | {_clock(t['models'])} "
                         f"| {_clock(t['total'])} |")
        lines.append("")
    lines += ["### Channel", "", "```yaml", payload.get("channel_yaml", "").strip(), "```", ""]
    return lines


def headline(payload: dict[str, Any] | None) -> list[str]:
    """The README's table: AUC per model and signal."""
    if payload is None:
        return ["Physics benchmark not run yet (`make bench-physics`)."]
    status = "" if payload.get("complete") else f" **Partial run ({payload['mode']}), not the full benchmark.**"
    seeds = len(payload["seeds"])
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed, no spread"
    return [f"AUC ({spread}) on the generated benchmark, "
            f"{machine_line(payload)}.{status} Full tables, eps_S at eps_B = 1e-2 and 1e-3 and the statements: "
            "[benchmarks/RESULTS.md](benchmarks/RESULTS.md).", ""] + table(payload, "auc")


# ------------------------------------------------------------------------------------------- compute


MISSED_BECAUSE = {
    ("bench_prepare", "ratio prepare / bare"): "reading, converting and writing 1M events take 1.8 s against a bare "
    "read of 0.6 s timed after its imports; imports are 0.33 s (README, Conversion speed)",
    ("bench_generate", "speed-up 2 workers"): "needs two free cores: with other jobs on them 2 workers fall below "
    "one (README, Generation speed)",
    ("bench_generate", "worker loop / bare next"): "reading Pythia's event record, one binding call per particle "
    "(1.5 ms of 7 ms an event), has no bulk accessor (README, Generation speed)",
    ("bench_cflow", "CFLOW image auroc"): "each scale alone the flow is at least the Gaussian; averaged, its weak "
    "coarsest scale weighs more (README, CFLOW-AD speed and quality; cflow_scales)",
    ("bench_cflow", "inference time ours/anomalib"): "our inference does 0.68x anomalib's multiply-adds (the "
    "resnet18 forward is the same); on 32 px jets ours runs at 0.48-0.49x, close to the target, and a noisy run can "
    "cross it (README, CFLOW-AD speed and quality)",
    ("bench_scale", "prepare speed-up, 2 vs 1 Dask"): "2 workers, client and scheduler share 2 cores; one worker "
    "reads, converts and writes on one thread (README, Scaling out)",
    ("bench_scale_scoring", "score speed-up, 2 vs 1 Dask"): "one worker already runs two torch threads on the two "
    "cores; a second worker adds no core here, and the client and other jobs share them (README, Scaling out)",
}
"""Why a target is missed, shown beside MISSED: (script, start of the figure's name after the data set) -> reason;
the numbers behind each reason are in the README section named."""


def _missed(script: str, name: str) -> str:
    for (s, part), reason in MISSED_BECAUSE.items():
        if s == script and part in name:
            return f"MISSED: {reason}"
    return "MISSED"


def compute_section(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Compute", "", "Every figure the other bench scripts record, with its reference or target where it "
             "has one.", "", "| script | figure | value | unit | reference | target | status |",
             "|---|---|---|---|---|---|---|"]
    scripts = list(COMPUTE_SCRIPTS) + sorted(s for s in results if s not in COMPUTE_SCRIPTS and s not in PHYSICS_SCRIPTS)
    for script in scripts:
        payload = results.get(script)
        if payload is None:
            lines.append(f"| {script} | not run yet | | | | | |")
            continue
        for row in payload["rows"]:
            status = "" if row.get("ok") is None else ("OK" if row["ok"] else _missed(script, row["name"]))
            lines.append(f"| {script} | {row['name']} | {number(row.get('value'))} | {row.get('unit', '')} | "
                         f"{_reference(row.get('reference'))} | {row.get('target') or ''} | {status} |")
    lines += ["", "Where and when each script ran:", ""]
    for script in scripts:
        payload = results.get(script)
        lines.append(f"- `{script}`: " + (machine_line(payload) if payload else "not run yet"))
    return lines + [""]


# ------------------------------------------------------------------------------------------- main


def build(results: dict[str, dict[str, Any]]) -> str:
    lines = ["# DarkFlow benchmark results", "",
             "Generated by `benchmarks/make_results.py` from `benchmarks/results/*.json`, which the scripts in "
             "`benchmarks/` write (`make bench`); no number here is typed by hand.", ""]
    from _darkmachines_report import section

    lines += section(results.get("bench_darkmachines"), machine_line)
    lines += physics_section(results.get("bench_physics"))
    lines += compute_section(results)
    return "\n".join(lines)


def update_readme(readme: Path, block: list[str], begin: str = BEGIN, end: str = END) -> bool:
    """Replace the text between the ``begin`` and ``end`` markers; False when the README has no markers."""
    text = readme.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = head + begin + "\n" + "\n".join(block) + "\n" + end + tail
    if new != text:
        tmp = readme.with_name(f".{readme.name}.tmp")
        tmp.write_text(new)
        os.replace(tmp, readme)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--readme", default=str(HERE.parent / "README.md"), help="README to update, or 'none'")
    args = parser.parse_args(argv)
    results = load(args.results) if args.results.is_dir() else {}
    text = build(results)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({', '.join(sorted(results)) or 'no results yet'})")
    if args.readme != "none":
        from _darkmachines_report import headline as dm_headline

        ok = update_readme(Path(args.readme), headline(results.get("bench_physics")))
        print(f"{'updated' if ok else 'no physics-table markers in'} {args.readme}")
        ok = update_readme(Path(args.readme), dm_headline(results.get("bench_darkmachines"), machine_line),
                           DM_BEGIN, DM_END)
        print(f"{'updated' if ok else 'no darkmachines-table markers in'} {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
