#!/usr/bin/env python
"""Measure and size the Dark Machines channel samples (arXiv:2105.14027): chan1, chan2a, chan2b, chan3.

For every process of :data:`PROCESSES` this generates a small sample (``darkflow generate``, one worker,
one core), converts it with ``darkflow prepare --channel`` for each channel of its group and records

    generation ms/event (wall time of the whole ``generate`` call / events, init and writing included),
    sigma (pb), per channel: selected fraction, selected N_eff = (sum w)^2 / sum w^2, selected sigma
    (sum w, pb) and each SM process's share of the weighted SM in that channel.

The hadronic SM processes are cut at generator level (pTHatMin); for each, a pTHat-biased scan from well
below the cut (:data:`SCANS`) gives the selected cross section against pTHat, hence the leakage (the part of
the channel's cross section that the cut throws away) and the QCD slices. Everything lands in ``--work`` (one JSON
per sample), so an interrupted run resumes where it stopped. From the measurements it proposes generated
counts per process (:func:`propose`) that maximise the test N_eff of the weighted SM after each channel
within a generation-time budget, and writes ``benchmarks/results/dm_channels_sizing.json``.

    python benchmarks/size_dm_channels.py                       # measure what is missing, then propose
    python benchmarks/size_dm_channels.py --only ttbar_ht       # one process
    python benchmarks/size_dm_channels.py --propose-only        # no generation, proposal from --work
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HADRONIC = ("chan1", "chan3")
LEPTONIC = ("chan2a", "chan2b")
ALL = HADRONIC + LEPTONIC
EVENTS_SM, EVENTS_BSM = 1500, 1000

# name -> (kind, group, channels, events)
PROCESSES: dict[str, tuple[str, str, tuple[str, ...], int]] = {
    # hadronic SM (one generation serves chan1 and chan3)
    "qcd_ht_250": ("sm", "hadronic", HADRONIC, 2000),
    "qcd_ht_350": ("sm", "hadronic", HADRONIC, 2000),
    "qcd_ht_500": ("sm", "hadronic", HADRONIC, 2000),
    "qcd_ht_800": ("sm", "hadronic", HADRONIC, EVENTS_SM),
    "ttbar_ht_lo": ("sm", "hadronic", HADRONIC, 2000),
    "ttbar_ht_hi": ("sm", "hadronic", HADRONIC, EVENTS_SM),
    "wjets_ht": ("sm", "hadronic", HADRONIC, EVENTS_SM),
    "zjets_nunu_ht": ("sm", "hadronic", HADRONIC, EVENTS_SM),
    "single_top_ht": ("sm", "hadronic", HADRONIC, EVENTS_SM),
    "gammajets_ht": ("sm", "hadronic", HADRONIC, EVENTS_SM),
    # leptonic SM
    "ww_2l2nu": ("sm", "leptonic", LEPTONIC, EVENTS_SM),
    "wz_3lnu": ("sm", "leptonic", LEPTONIC, EVENTS_SM),
    "zz_ll": ("sm", "leptonic", LEPTONIC, EVENTS_SM),
    "ttbar_2l": ("sm", "leptonic", LEPTONIC, EVENTS_SM),
    "zjets_ll_dm": ("sm", "leptonic", LEPTONIC, EVENTS_SM),
    "wjets": ("sm", "leptonic", LEPTONIC, EVENTS_SM),
    # hadronic signals
    "glgl1400_neut1100": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "glgl1600_neut800": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "sqsq1800_neut800": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "sqsq1400_neut800": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "stop1000_neut300": ("bsm", "hadronic", ALL, EVENTS_BSM),
    "monojet_zp2000_dm50": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "gluino": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "dm_monojet": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "zprime_ttbar": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    "leptoquark": ("bsm", "hadronic", ALL, EVENTS_BSM),
    "hidden_valley": ("bsm", "hadronic", HADRONIC, EVENTS_BSM),
    # lepton signals
    "chaneut_cha250_neut150": ("bsm", "leptonic", LEPTONIC, EVENTS_BSM),
    "chacha_cha400_neut60": ("bsm", "leptonic", LEPTONIC, EVENTS_BSM),
    "chacha_cha600_neut200": ("bsm", "leptonic", LEPTONIC, EVENTS_BSM),
    "wprime_wz": ("bsm", "leptonic", ALL, EVENTS_BSM),
}

SCANS: dict[str, tuple[float, float, int] | tuple[float, float, int, float]] = {
    "qcd_ht_250": (250.0, 3.0, 8000),
    "qcd_ht_250@deep": (170.0, 2.0, 8000, 250.0),
    "ttbar_ht_lo": (50.0, 2.0, 2000),
    "wjets_ht": (100.0, 3.0, 1500),
    "zjets_nunu_ht": (100.0, 3.0, 1500),
    "single_top_ht": (50.0, 3.0, 1500),
    "gammajets_ht": (100.0, 4.0, 1500),
}
"""Hadronic SM process -> (pTHatMin, bias power, events[, pTHatMax]) of a pTHat-biased scan from below its
cut (``process@tag``: a further scan of the same process).
Pythia weights the biased events by (pTHatMin / pTHat)^power, so pTHat = pTHatMin * (w_max / w)^(1 / power)
(w_max: the largest weight of the scan, an event at the lower edge), which gives the selected cross section
as a function of pTHat: the leakage below each process's cut and, for QCD, the pTHat slices."""

SPLIT = {"train": 0.30, "calibration": 0.20, "test": 0.50}
"""Fractions of every process's generated events in each disjoint file (split by event index)."""
SCAN_EDGES = [0, 50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800, 1000, 1500, 14000]
SLICES: dict[str, dict[str, tuple[float, float]]] = {
    "qcd_ht_250": {"qcd_ht_250": (250, 350), "qcd_ht_350": (350, 500), "qcd_ht_500": (500, 800),
                   "qcd_ht_800": (800, 14000)},
    "ttbar_ht_lo": {"ttbar_ht_lo": (50, 200), "ttbar_ht_hi": (200, 14000)},
}
"""Scan -> pTHat slices (catalogue processes) whose sigma and selected fractions the proposal takes from the
scan (thousands of events over the whole range) rather than from the slice's own small sample."""
TARGET_TEST_NEFF = 20_000
LEPTONIC_TARGET_TEST_NEFF = 10_000
LEPTONIC_BUDGET_MIN = 12.0
SIGNAL_SELECTED, SIGNAL_MIN, SIGNAL_MAX = 1000, 2000, 30_000
PARALLEL = 2


def _scan_yaml(name: str, work: Path) -> str:
    """A copy of ``name``'s YAML with the cuts and pTHat bias of its scan (:data:`SCANS`)."""
    from darkflow.config import read_yaml
    from darkflow.generate.catalogue import load_process

    proc = load_process(name.split("@")[0])
    data = read_yaml(proc.source)
    pt_min, power = SCANS[name][:2]
    data["cuts"] = {"pTHatMin": pt_min} | ({"pTHatMax": SCANS[name][3]} if len(SCANS[name]) > 3 else {})
    data["settings"] = [*data["settings"], "PhaseSpace:bias2Selection = on",
                        f"PhaseSpace:bias2SelectionPow = {power:g}", f"PhaseSpace:bias2SelectionRef = {pt_min:g}"]
    if proc.slha:
        data["slha"] = str(Path(proc.source).parent / proc.slha)
    path = work / "yaml" / f"{name.replace('@', '_')}_scan.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def measure(sample: str, process: str, events: int, channels: tuple[str, ...], work: Path, seed: int) -> dict:
    """Generate ``events`` of ``process`` (a name or YAML path), prepare each channel; one JSON in ``work``."""
    import uproot

    from darkflow.data_prep.prepare import PrepareConfig, prepare
    from darkflow.events import EventFile
    from darkflow.generate.run import GenerateConfig, generate

    record = work / f"{sample}.json"
    if record.exists():
        return json.loads(record.read_text())
    gen_dir = work / "gen"
    (res,) = generate(GenerateConfig(process=process, events=events, seed=seed, out=str(gen_dir)), progress=False).processes
    root = gen_dir / f"{Path(process).stem}.root"
    out: dict = {"sample": sample, "events": res.events, "sigma_pb": res.sigma_pb, "sigma_err_pb": res.sigma_err_pb,
                 "gen_seconds": res.seconds, "ms_per_event": 1e3 * res.seconds / res.events, "channels": {}}
    with uproot.open(root) as f:
        weights = {"all": np.asarray(f["Events"]["weight"].array(library="np"), np.float64)}
    for ch in channels:
        h5 = work / "h5" / f"{sample}_{ch}.h5"
        h5.parent.mkdir(parents=True, exist_ok=True)
        prepare(PrepareConfig(inputs=[str(root)], out=str(h5), channel=ch, shard="0/1"), progress=False)
        with EventFile(h5) as events:
            w = events.read(None, ("weight",))["weight"]
        weights[ch] = w
        s, s2 = float(w.sum()), float((w**2).sum())
        out["channels"][ch] = {"selected": int(len(w)), "fraction": len(w) / res.events, "sum_w_pb": s,
                               "sum_w2_pb2": s2, "n_eff": s * s / s2 if s2 > 0 else 0.0}
    root.unlink(missing_ok=True)
    np.savez_compressed(work / f"{sample}.npz", **weights)
    record.write_text(json.dumps(out, indent=1) + "\n")
    return out


def propose(results: dict, channels: tuple[str, ...], budget_s: float, target: float) -> dict:
    """Generated counts per SM sample of ``results`` (:func:`measure`'s entries) for the best test N_eff.

    With n0_i measured events, S_i = sum w and Q_i = sum w^2 after a channel, generating n_i events gives
    Var = sum_i Q_i n0_i / n_i and N_eff = S^2 / Var. Minimising sum_ch Var_ch / S_ch^2 at fixed generation
    time sum_i n_i t_i gives n_i ~ sqrt(n0_i sum_ch (Q_i,ch / S_ch^2) / t_i). The total is scaled so that the
    smallest test N_eff reaches ``target``, or to ``budget_s`` (wall seconds on :data:`PARALLEL` cores) if that
    cannot be met.
    """
    names = list(results)
    tot = {ch: sum(results[n]["channels"][ch]["sum_w_pb"] for n in names) for ch in channels}
    t = {n: results[n]["ms_per_event"] / 1e3 for n in names}
    shape = {}
    for n in names:
        v = sum(results[n]["channels"][ch]["sum_w2_pb2"] / tot[ch] ** 2 for ch in channels if tot[ch] > 0)
        shape[n] = math.sqrt(results[n]["events"] * v / t[n]) if v > 0 else 0.0
    floor = 2000  # every process gets a few thousand events, so that none is absent from any file

    def counts_for(scale: float) -> dict[str, int]:
        return {n: max(floor, int(round(scale * shape[n]))) for n in names}

    def neff(counts: dict[str, int], frac: float) -> dict[str, float]:
        out = {}
        for ch in channels:
            var = sum(results[n]["channels"][ch]["sum_w2_pb2"] * results[n]["events"] / (frac * counts[n])
                      for n in names)
            out[ch] = tot[ch] ** 2 / var if var > 0 else 0.0
        return out

    def seconds(counts: dict[str, int]) -> float:
        return sum(counts[n] * t[n] for n in names) / PARALLEL

    lo, hi = 1e-3, 1e9
    for _ in range(200):  # bisection on the overall scale for the target (N_eff grows with the scale)
        mid = math.sqrt(lo * hi)
        if min(neff(counts_for(mid), SPLIT["test"]).values()) >= target:
            hi = mid
        else:
            lo = mid
    counts = counts_for(hi)
    reached = seconds(counts) <= budget_s
    if not reached:
        lo, hi = 1e-3, hi
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if seconds(counts_for(mid)) <= budget_s else (lo, mid)
        counts = counts_for(lo)
    best = {}  # each channel alone: N_eff per core-second of the best allocation, minutes for the target
    for ch in channels:
        root = sum(math.sqrt(results[n]["channels"][ch]["sum_w2_pb2"] * results[n]["events"] * t[n]) for n in names)
        rate = tot[ch] ** 2 / root**2 if root > 0 else 0.0
        best[ch] = {"n_eff_per_core_second": rate,
                    "minutes_on_2_cores_for_target": target / SPLIT["test"] / rate / PARALLEL / 60 if rate else None}
    selected = {ch: {part: int(sum(frac * counts[n] * results[n]["channels"][ch]["fraction"] for n in names))
                     for part, frac in SPLIT.items()} for ch in channels}
    return {"counts": counts, "target_test_n_eff": target, "target_reached_within_budget": reached,
            "generation_minutes_on_2_cores": seconds(counts) / 60,
            "test_n_eff": {ch: round(v) for ch, v in neff(counts, SPLIT["test"]).items()},
            "calibration_n_eff": {ch: round(v) for ch, v in neff(counts, SPLIT["calibration"]).items()},
            "selected_events_per_file": selected, "single_channel_optimum": best}


def summarise(results: dict) -> dict:
    """Per process and channel: fraction, N_eff, sigma after the channel, share of the weighted SM."""
    table = {}
    for group, channels in (("hadronic", HADRONIC), ("leptonic", LEPTONIC)):
        sm = [n for n, (k, g, _, _) in PROCESSES.items() if k == "sm" and g == group and n in results]
        tot = {ch: sum(results[n]["channels"][ch]["sum_w_pb"] for n in sm) for ch in channels}
        for n, (kind, grp, chans, _) in PROCESSES.items():
            if grp != group or n not in results:
                continue
            r = results[n]
            row = {"kind": kind, "sigma_pb": r["sigma_pb"], "ms_per_event": r["ms_per_event"], "events": r["events"]}
            for ch in chans:
                c = r["channels"][ch]
                row[ch] = {"fraction": c["fraction"], "n_eff": round(c["n_eff"], 1), "sigma_sel_pb": c["sum_w_pb"]}
                if kind == "sm" and ch in tot and tot[ch] > 0:
                    row[ch]["sm_share"] = c["sum_w_pb"] / tot[ch]
            table[n] = row
    return table


def scan_pthat(name: str, work: Path) -> dict[str, np.ndarray]:
    """pTHat of every generated and every selected event of ``name``'s scan, and their weights (pb)."""
    pt_min, power = SCANS[name][:2]
    data = np.load(work / f"{name}_scan.npz")
    w_max = data["all"].max()
    out = {}
    for key in data.files:
        w = data[key]
        out[key] = (pt_min * (w_max / w) ** (1.0 / power), w)
    return out


def scan_summary(name: str, work: Path, cut: float, edges: list[float]) -> dict:
    """Selected sigma per pTHat bin and the leakage below ``cut`` (fraction of the selected sigma)."""
    pt = scan_pthat(name, work)
    out: dict = {"scan": dict(zip(("pTHatMin", "bias_power", "events", "pTHatMax"), SCANS[name], strict=False)),
                 "cut": cut}
    for ch in HADRONIC:
        p, w = pt[ch]
        total = float(w.sum())
        out[ch] = {"selected": int(len(w)), "sigma_sel_pb": total,
                   "leakage_below_cut": float(w[p < cut].sum() / total) if total > 0 else None,
                   "selected_below_cut": int((p < cut).sum())}
        if total > 0 and (p < cut).sum() == 0:  # none below: a one-event upper bound, at the weight of the lowest bin
            lowest = pt["all"][1][(pt["all"][0] < cut)]
            out[ch]["leakage_one_event_bound"] = float(lowest.max() / total) if len(lowest) else None
    pa, wa = pt["all"]
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (pa >= lo) & (pa < hi)
        row = {"pTHat": [lo, hi], "generated": int(inside.sum()), "sigma_pb": float(wa[inside].sum())}
        for ch in HADRONIC:
            p, w = pt[ch]
            sel = (p >= lo) & (p < hi)
            row[ch] = {"selected": int(sel.sum()), "sigma_sel_pb": float(w[sel].sum())}
        bins.append(row)
    out["bins"] = bins
    return out


def signal_counts(results: dict) -> dict:
    """Events per signal for :data:`SIGNAL_SELECTED` selected events in its best channel (at least
    :data:`SIGNAL_MIN`, at most :data:`SIGNAL_MAX` generated), and the generation minutes on 2 cores."""
    out = {}
    for n, (kind, _, channels, _) in PROCESSES.items():
        if kind != "bsm" or n not in results:
            continue
        r = results[n]
        best = max(channels, key=lambda ch: r["channels"][ch]["fraction"])
        eps = r["channels"][best]["fraction"]
        count = int(min(SIGNAL_MAX, max(SIGNAL_MIN, math.ceil(SIGNAL_SELECTED / max(eps, 1e-9)))))
        out[n] = {"events": count, "best_channel": best, "selected_fraction": eps,
                  "selected_events": round(count * eps)}
    minutes = sum(o["events"] * results[n]["ms_per_event"] / 1e3 for n, o in out.items()) / PARALLEL / 60
    return {"counts": {n: o["events"] for n, o in out.items()}, "generation_minutes_on_2_cores": minutes,
            "detail": out}


def slices_from_scan(name: str, work: Path, slices: dict[str, tuple[float, float]], results: dict) -> dict:
    """Unweighted pTHat slices of ``name`` (a process measured by a scan) as entries shaped like
    :func:`measure`'s results: sigma and selected fraction per slice from the scan's weighted events, the
    generation time per event of the slice's own sample. An unweighted slice of n events with cross section
    sigma and selected fraction eps has sum w = sigma eps and sum w^2 = sigma^2 eps / n (here n = 1). The
    fraction is the scan's and the slice's own sample's, averaged with their event counts as weights."""
    pt = scan_pthat(name, work)
    out = {}
    for slice_name, (lo, hi) in slices.items():
        pa, wa = pt["all"]
        sigma = float(wa[(pa >= lo) & (pa < hi)].sum())
        entry = {"events": 1, "sigma_pb": sigma, "ms_per_event": results[slice_name]["ms_per_event"], "channels": {},
                 "generated_in_scan": int(((pa >= lo) & (pa < hi)).sum())}
        n_scan, own = int(((pa >= lo) & (pa < hi)).sum()), results[slice_name]
        for ch in HADRONIC:
            p, w = pt[ch]
            sel = (p >= lo) & (p < hi)
            eps = float(w[sel].sum()) / sigma if sigma > 0 else 0.0
            # pooled with the slice's own unweighted sample, event-count weighted (rare channels: chan1 QCD)
            eps = (eps * n_scan + own["channels"][ch]["fraction"] * own["events"]) / (n_scan + own["events"])
            entry["channels"][ch] = {"selected": int(sel.sum()), "fraction": eps, "sum_w_pb": sigma * eps,
                                     "sum_w2_pb2": sigma * sigma * eps}
        out[slice_name] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="benchmarks/work/dm_channels", help="folder of per-sample results")
    parser.add_argument("--out", default="benchmarks/results/dm_channels_sizing.json")
    parser.add_argument("--only", help="comma-separated process names to measure (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-min", type=float, default=75.0, help="generation budget, minutes on 2 cores")
    parser.add_argument("--propose-only", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    if not args.propose_only:
        for name, (_, _, channels, events) in PROCESSES.items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            r = measure(name, name, events, channels, work, args.seed)
            print(f"{name:<24} {r['ms_per_event']:7.1f} ms/evt  sigma {r['sigma_pb']:.4g} pb  "
                  + "  ".join(f"{ch} {c['fraction']:.4f} (N_eff {c['n_eff']:.0f})" for ch, c in r["channels"].items())
                  + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
            for scan in (k for k in SCANS if k.split("@")[0] == name):
                r = measure(f"{scan}_scan", _scan_yaml(scan, work), SCANS[scan][2], HADRONIC, work, args.seed)
                print(f"  scan {scan} {SCANS[scan]}: sigma {r['sigma_pb']:.4g} pb  "
                      + "  ".join(f"{ch} {c['selected']} sel, {c['sum_w_pb']:.3g} pb" for ch, c in r["channels"].items()),
                      flush=True)
    results = {n: json.loads((work / f"{n}.json").read_text()) for n in PROCESSES if (work / f"{n}.json").exists()}
    from darkflow.generate.catalogue import load_process

    scans = {n: scan_summary(n, work, load_process(n.split("@")[0]).cuts.get("pTHatMin", 0.0), SCAN_EDGES)
             for n in SCANS if (work / f"{n}_scan.npz").exists()}
    budget = 60 * args.budget_min
    sm = {g: {n: results[n] for n, (k, grp, _, _) in PROCESSES.items() if k == "sm" and grp == g and n in results}
          for g in ("hadronic", "leptonic")}
    for scan, slices in SLICES.items():  # sliced processes: sigma and fractions from their scan
        if scan in scans and all(n in results for n in slices):
            sm["hadronic"] |= slices_from_scan(scan, work, slices, results)
    signals = signal_counts(results)
    leptonic = propose(sm["leptonic"], LEPTONIC, 60 * LEPTONIC_BUDGET_MIN, LEPTONIC_TARGET_TEST_NEFF)
    rest = budget - 60 * (signals["generation_minutes_on_2_cores"] + leptonic["generation_minutes_on_2_cores"])
    hadronic = propose(sm["hadronic"], HADRONIC, rest, TARGET_TEST_NEFF)
    total = sum(p["generation_minutes_on_2_cores"] for p in (signals, leptonic, hadronic))
    proposal = {"hadronic": hadronic, "leptonic": leptonic, "signals": signals,
                "total_generation_minutes_on_2_cores": total}
    from_scans = {n: {"sigma_pb": r["sigma_pb"], "ms_per_event": r["ms_per_event"],
                      **{ch: {"fraction": c["fraction"], "selected_in_scan": c["selected"],
                              "sigma_sel_pb": c["sum_w_pb"]} for ch, c in r["channels"].items()},
                      "generated_in_scan": r["generated_in_scan"]}
                  for n, r in sm["hadronic"].items() if r["events"] == 1}
    doc = {"proposal": proposal, "split": SPLIT, "sliced_sm_from_scans": from_scans, "target_test_n_eff": TARGET_TEST_NEFF,
           "parallel_generation_processes": PARALLEL, "processes": summarise(results), "scans": scans}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(proposal, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
