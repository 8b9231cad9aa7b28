"""The ``darkflow`` command: one subcommand per verb (DESIGN section 6).

Heavy libraries (torch, uproot, awkward, h5py) are imported inside the commands that use them, so that
``darkflow --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from darkflow import __version__


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"give the number of torch threads per process, an integer >= 1 (got {text!r})")
    return value


def _add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads N``, for every command that runs torch."""
    parser.add_argument("--threads", type=_thread_count, metavar="N",
                        help="torch threads per process (default: OMP_NUM_THREADS if set, else the cores this "
                        "process may use, from its CPU affinity and cgroup quota, shared among DDP processes)")


def _lead_process() -> bool:
    """False in the extra processes of a DDP run (the launcher sets their rank)."""
    import os

    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def _use_threads(args: argparse.Namespace, processes: int = 1, announce: bool = False) -> None:
    """Set torch's thread count (``--threads`` or the cores available) before the command imports torch;
    ``announce``: say it on standard output (standard error stays for progress and the one-line errors)."""
    from darkflow.threads import apply_threads, choose_threads

    choice = choose_threads(args.threads, processes, requested_by="--threads")
    apply_threads(choice.threads)
    if announce and _lead_process():
        print(choice.describe(), flush=True)


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    from darkflow.config import parse_override

    return dict(parse_override(p) for p in pairs or [])


def _merge_args(args: argparse.Namespace, keys: Sequence[str]) -> dict[str, Any]:
    """Config dict from ``--config`` YAML, then every flag the user gave, then ``--set`` overrides."""
    from darkflow.config import apply_overrides, read_yaml

    data = read_yaml(args.config) if getattr(args, "config", None) else {}
    for key in keys:
        value = getattr(args, key, None)
        if value is not None and value != []:
            data[key] = value
    return apply_overrides(data, _overrides(getattr(args, "set", None)))


def _cmd_prepare(args: argparse.Namespace) -> int:
    from darkflow.config import validate
    from darkflow.data_prep.prepare import PrepareConfig, prepare

    keys = ["inputs", "out", "source", "channel", "layout", "objects", "label", "process", "max_events",
            "chunk_size", "shard", "on_error", "compression", "workers", "dask_scheduler"]
    config = validate(PrepareConfig, _merge_args(args, keys), "prepare options")
    result = prepare(config, progress=not args.quiet)
    skipped = f", skipped {result.n_skipped}" if result.n_skipped else ""
    print(f"wrote {result.out}: {result.n_selected} of {result.n_read} events selected{skipped}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from darkflow.data_prep.summary import summarize

    for path in args.files:
        print(summarize(path))
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from darkflow.data_prep.store import merge

    attrs = merge(args.shards, args.out, label=args.label)
    print(f"wrote {args.out}: {attrs['n_selected']} events from {len(args.shards)} file(s)")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from darkflow.config import validate
    from darkflow.generate.run import GenerateConfig, generate, list_processes

    if args.list:
        print(list_processes())
        return 0
    keys = ["process", "events", "seed", "out", "format", "workers", "detector", "constituents"]
    config = validate(GenerateConfig, _merge_args(args, keys), "generate options")
    for res in generate(config, progress=not args.quiet):
        names = ", ".join(str(f) for f in res.files)
        print(f"{res.process}: {res.events} events, sigma = {res.sigma_pb:.4g} +- {res.sigma_err_pb:.2g} pb, "
              f"{res.events / res.seconds:.1f} events/s -> {names}")
    return 0


def _cmd_jetimages(args: argparse.Namespace) -> int:
    from darkflow.config import validate
    from darkflow.jetimages.make import JetImagesConfig, make_jet_images

    keys = ["inputs", "out", "size", "radius", "max_events", "label", "jet_pt_min", "jet_pt_max", "jet_abs_eta_max"]
    config = validate(JetImagesConfig, _merge_args(args, keys), "jetimages options")
    res = make_jet_images(config, progress=not args.quiet)
    print(f"wrote {res.out}: {res.n_selected} {res.image_kind} images of {res.n_read} events "
          f"({res.n_read / max(res.seconds, 1e-9):.0f} events/s)")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from darkflow.train.config import load_train_config

    overrides = _overrides(args.set)
    flags = {"model.flow": args.flow, "model.encoder": args.encoder, "training.epochs": args.epochs,
             "training.batch_size": args.batch_size, "training.seed": args.seed,
             "training.accelerator": args.accelerator, "training.devices": args.devices,
             "training.strategy": args.strategy, "training.num_nodes": args.num_nodes}
    overrides |= {k: v for k, v in flags.items() if v is not None}
    config = load_train_config(args.model, overrides)
    if args.data is None or args.out is None:
        raise SystemExit("darkflow train: error: --data and --out are required (see 'darkflow train --help')")
    _use_threads(args, max(1, config.training.devices), announce=True)
    from darkflow.train.run import TrainOptions, train

    summary = train(config, TrainOptions(data=args.data, out=args.out, resume=args.resume, progress=not args.quiet))
    if summary:
        print(f"trained {summary['epochs']} epoch(s), best validation loss {summary['best_val_loss']:.5g}: "
              f"{summary['out']}/model.pt")
        for line in summary.get("warnings", []):
            print(f"darkflow train: warning: {line}", file=sys.stderr)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    _use_threads(args)
    from darkflow.train.score import score, summary

    def notify(kind: str, line: str) -> None:
        print(f"darkflow score: {kind}: {line}", file=sys.stderr)

    labels = score(args.run, args.data, args.out, strict=args.strict, notify=notify)
    print(f"wrote {args.out}")
    rows = {row["label"]: row for row in summary(args.out)}
    name = next(iter(rows.values()))["score"] if rows else "total"
    print(f"{'label':<20s} {'events':>9s} {'N_eff':>11s} {'sum of weights':>14s} {'mean ' + name:>12s}  role")
    for label in labels:
        r = rows[label]
        print(f"{label:<20s} {r['events']:>9d} {r['n_eff']:>11.1f} {r['sum_w']:>14.5g} {r['mean']:>12.4g}  {r['role']}")
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from darkflow.analysis.scan import ScanOptions, eps_label, scan

    result = scan(ScanOptions(scores=args.scores, background=args.background, out=args.out,
                              calibration=args.calibration, score=args.score, eps_b=args.eps_b,
                              signals=args.signals, lumi=args.lumi))
    roles = result["roles"]
    print("\n".join(roles.lines()))
    for line in roles.warnings:
        print(f"darkflow scan: warning: {line}", file=sys.stderr)
    keys = [eps_label(t.target) for t in next(iter(result["thresholds_by_score"].values()))]
    print(f"{'signal':<22s} {'score':<12s} {'AUC':>15s}" + "".join(f" {'eps_S @ ' + k:>26s}" for k in keys))
    for row in result["rows"]:
        cells = []
        for key in keys:
            value = row[f"eps_s@{key}"]
            cells.append("not resolved" if value is None else
                         f"{value:.3f} [{row[f'eps_s_lo@{key}']:.3f}, {row[f'eps_s_hi@{key}']:.3f}]")
        note = f"  ({row['note']})" if row["note"] else ""
        print(f"{row['signal']:<22s} {row['score']:<12s} {row['auc']:>7.4f} +- {row['auc_err']:.4f}"
              + "".join(f" {c:>26s}" for c in cells) + note)
    print(f"wrote thresholds.json, metrics.csv, metrics.json and scan.csv to {result['out']}")
    return 0


def _cmd_flag(args: argparse.Namespace) -> int:
    from darkflow.analysis.flag import flag, flag_events
    from darkflow.errors import InputError

    if args.run is not None:
        if args.data is None or args.scores is not None:
            raise InputError("with --run give --data FILE.h5 (not --scores); or use --scores with --label")
        _use_threads(args)
        result = flag_events(args.run, args.data, args.out, eps_b=args.eps_b, threshold=args.threshold,
                             score=args.score, calibration=args.calibration)
        args.label = Path(args.data).stem
    else:
        if args.scores is None or args.label is None:
            raise InputError("give --scores SCORES.h5 --label LABEL, or --run RUN --data FILE.h5")
        result = flag(args.scores, args.label, args.out, eps_b=args.eps_b, calibration=args.calibration,
                      threshold=args.threshold, score=args.score)
    for line in result.warnings:
        print(f"darkflow flag: warning: {line}", file=sys.stderr)
    print(f"threshold {result.score} > {result.threshold:.6g}: {result.origin}")
    print(f"flagged {result.n_flagged} of {result.n_events} events of {args.label!r} -> {result.out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    _use_threads(args)
    from darkflow.analysis.report import ReportOptions, report

    result = report(ReportOptions(run=args.run, scan=args.scan, scores=args.scores, out=args.out,
                                  config=args.config, style=args.style, score=args.score))
    for note in result["notes"]:
        print(note)
    print(f"wrote {result['markdown']}, {result['html']} and {len(result['files'])} plot file(s)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from darkflow.errors import ConfigError, InputError

    run = Path(args.run)
    if not run.is_dir():
        raise InputError(f"run directory not found: {run}")
    _use_threads(args)
    if (run / "cflow.pt").is_file():
        try:
            from darkflow.cflow.export import export_onnx
        except ImportError:
            raise ConfigError(f"{run} is a CFLOW-AD run, and this installation has no CFLOW-AD export "
                              "(darkflow.cflow.export)") from None
        out = export_onnx(run, args.out)
    else:
        from darkflow.train.export import export_vae_onnx

        out = export_vae_onnx(run, args.out)
    print(f"wrote {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from darkflow.demo import DemoOptions, demo
    from darkflow.errors import InputError

    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    _use_threads(args)
    out = demo(DemoOptions(out=Path(args.out), quick=args.quick, fresh=args.fresh, workers=args.workers))
    print(f"comparison table: {out.resolve()}; reports in {out.parent.resolve() / 'runs'}/<run>/report/")
    return 0


def _cmd_cflow_train(args: argparse.Namespace) -> int:
    from darkflow.cflow.config import load_cflow_config

    overrides = _overrides(args.set)
    flags = {"image_size": args.image_size, "encoder.name": args.encoder, "encoder.weights": args.weights,
             "decoder.flow": args.flow, "training.epochs": args.epochs, "training.seed": args.seed,
             "training.accelerator": args.accelerator}
    overrides |= {k: v for k, v in flags.items() if v is not None}
    config = load_cflow_config(args.config, overrides)
    _use_threads(args, max(1, config.training.devices), announce=True)
    from darkflow.cflow.train import CflowTrainOptions, train_cflow

    summary = train_cflow(config, CflowTrainOptions(data=args.data, out=args.out, progress=not args.quiet))
    losses = summary["flow_losses"]
    print(f"trained on {summary['n_train']} images ({summary['n_val']} held out for calibration), "
          f"{len(losses)} epoch(s), final fiber NLL {losses[-1]:.4g}, validation NLL {summary['val_loss']:.4g}: "
          f"{summary['out']}/cflow.pt")
    return 0


def _cmd_cflow_score(args: argparse.Namespace) -> int:
    _use_threads(args)
    from darkflow.cflow.score import METRICS, score_cflow

    result = score_cflow(args.run, args.data, args.out, background=args.background, overlays=args.overlays)
    print(f"scored {result['n']} {result['kind']} image(s) -> {result['out']}")
    print("  ".join(f"{k} {'-' if result['metrics'][k] is None else format(result['metrics'][k], '.4f')}"
                    for k in METRICS))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    parser = _Parser(prog="darkflow", description="Model-independent new-physics searches with flow VAEs.")
    parser.add_argument("--version", action="version", version=f"darkflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("generate", help="generate Standard Model and BSM events with Pythia 8",
                       description="Generate events with Pythia 8, anti-kT jets and a parametric detector; "
                       "write NanoAOD-like ROOT and/or Dark Machines CSV with sigma/N weights (pb).")
    p.add_argument("--list", action="store_true", help="list the process catalogue and exit")
    p.add_argument("--process", help="process name(s), comma-separated, a mixture (sm) or a process .yaml")
    p.add_argument("--events", type=int, help="events per process (a mixture splits them by fraction)")
    p.add_argument("--seed", type=int, help="random seed (default 1); the same seed gives identical files")
    p.add_argument("--out", help="output folder (default: generated)")
    p.add_argument("--format", choices=["root", "csv", "both"], help="output format (default root)")
    p.add_argument("--workers", type=int, help="worker processes (default 1); each gets its own seed")
    p.add_argument("--detector", help="detector card: default or FILE.yaml")
    p.add_argument("--constituents", action="store_true", default=None,
                   help="also write the PF candidates (PFCands_pt, ...; ROOT only) for jet images; files grow ~10x")
    p.add_argument("--config", help="YAML file with any of these options; flags given here override it")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any option")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (no bar, no log lines)")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("prepare", help="convert ROOT / Dark Machines CSV events into a padded HDF5 event file",
                       description="Convert ROOT (NanoAOD, Delphes, any tree via a schema YAML) or Dark Machines "
                       "CSV events into pT-ordered, zero-padded arrays in HDF5 (DESIGN section 3).")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="ROOT or CSV files")
    p.add_argument("--out", help="output .h5 file (written atomically)")
    p.add_argument("--config", help="YAML file with any of these options; flags given here override it")
    p.add_argument("--source", help="auto (default), nanoaod, nanoaod_opendata2015, delphes, darkmachines or FILE.yaml")
    p.add_argument("--channel", help="none (default), chan1, chan2a, chan2b, chan3 or FILE.yaml; selecting no "
                   "event is an error (a --shard is written empty, with a note)")
    p.add_argument("--layout", help="default (32x4), single_list or FILE.yaml")
    p.add_argument("--objects", help="object definitions: darkmachines (default: pT/|eta| cuts, ID and isolation "
                   "where the source has them, jets removed within Delta R 0.4 of leptons and photons), "
                   "kinematic (pT/|eta| cuts only) or FILE.yaml")
    p.add_argument("--label", help="sample label stored in the file (default: output file name)")
    p.add_argument("--process", help="process name for every event of ROOT inputs (default: each file's name)")
    p.add_argument("--max-events", type=int, help="read at most N events in all")
    p.add_argument("--chunk-size", type=int, help="events read per step (default 100000); bounds memory")
    p.add_argument("--shard", help="I/N: convert only the I-th of N equal event ranges (I from 0), for batch jobs")
    p.add_argument("--on-error", choices=["fail", "skip"], help="malformed lines / NaN events: fail (default) or skip and count")
    p.add_argument("--compression", choices=["none", "gzip", "lzf"], help="HDF5 compression (default none)")
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, metavar="N",
                         help="convert on a local Dask cluster of N processes (needs darkflow[dask])")
    cluster.add_argument("--dask-scheduler", metavar="ADDR",
                         help="convert on the Dask cluster at ADDR, e.g. tcp://10.0.0.1:8786 (needs darkflow[dask])")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any option, e.g. --set chunk_size=5000")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (no bar, no log lines)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("inspect", help="summarize an HDF5 event file")
    p.add_argument("files", nargs="+", metavar="FILE.h5")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("merge", help="concatenate event files (e.g. --shard outputs) into one")
    p.add_argument("shards", nargs="+", metavar="SHARD.h5")
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--label", help="label of the merged sample (default: the first input's)")
    p.set_defaults(func=_cmd_merge)
    p = sub.add_parser("jetimages", help="pT-weighted eta-phi images of the leading large-R jet (or of the event)",
                       description="ROOT files with PF candidates (darkflow generate --constituents, PFNano): "
                       "anti-kT jets of radius R, the leading jet's constituents centred, rotated, flipped and "
                       "normalised to unit pT. Prepared .h5 event files: the event's objects around the leading "
                       "jet (+-pi). Writes images (N, 1, S, S) and the leading jet's kinematics to HDF5.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="ROOT files with PFCands_* or .h5 event files")
    p.add_argument("--out", help="output .h5 file (written atomically)")
    p.add_argument("--size", type=int, help="pixels per side (default 32)")
    p.add_argument("--radius", type=float, help="jet radius R and image half-width (default 0.8)")
    p.add_argument("--max-events", type=int, help="read at most N events in all")
    p.add_argument("--label", help="sample label stored in the file (default: output file name)")
    p.add_argument("--jet-pt-min", type=float, help="leading-jet pT threshold in GeV (default 20)")
    p.add_argument("--jet-pt-max", type=float, help="leading-jet pT upper bound in GeV (default none)")
    p.add_argument("--jet-abs-eta-max", type=float, help="leading-jet |eta| bound (default none)")
    p.add_argument("--config", help="YAML file with any of these options; flags given here override it")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any option")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (no bar, no log lines)")
    p.set_defaults(func=_cmd_jetimages)

    p = sub.add_parser("train", help="train a VAE (or a baseline) on a Standard Model event file",
                       description="Train with Lightning on CPU, GPU or several devices; writes a run directory.")
    p.add_argument("--data", help="the Standard Model event file (.h5 from darkflow prepare)")
    p.add_argument("--model", default="convvae", help="convvae (default), graphvae, density, hlf_density, svdd, isoforest or a models/*.yaml")
    p.add_argument("--out", help="run directory")
    p.add_argument("--flow", help="override model.flow (any name of the flow registry)")
    p.add_argument("--encoder", choices=["conv", "graph"], help="override model.encoder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--accelerator", choices=["cpu", "gpu", "auto"])
    p.add_argument("--devices", type=int)
    p.add_argument("--strategy", choices=["auto", "ddp"])
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. model.latent=4")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output (no bar, no log lines)")
    _add_threads(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("score", help="score event files with a trained model",
                       description="Write one group per input: the model's scores, the cut baselines hlf:NAME (each "
                       "high-level feature but MET_phi), weight, event_id, process and split (0/1: training/"
                       "validation events of the training file). Inputs prepared with another channel, object "
                       "definitions or source than the training file are reported (--strict: refused); inputs "
                       "holding training-file events are reported and marked.")
    p.add_argument("--run", required=True, help="run directory (or its model.pt)")
    p.add_argument("--data", required=True, nargs="+", help="event files (.h5); each becomes a group by its label")
    p.add_argument("--out", required=True, help="scores file (.h5); never one of the inputs")
    p.add_argument("--strict", action="store_true",
                   help="refuse inputs whose channel, object definitions or source differ from the training file's "
                   "(default: a warning per input and difference)")
    _add_threads(p)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("scan", help="metrics at fixed background efficiency and threshold scans of a scores file",
                       description="Four disjoint SM samples: the run's training and validation events, a "
                       "calibration sample (--calibration: thresholds) and a test sample (--background: AUC, eps_B). "
                       "Prints the roles with N and N_eff; writes thresholds.json, metrics.csv, metrics.json and "
                       "scan.csv with intervals and effective event counts.")
    p.add_argument("--scores", required=True, help="scores file (.h5 from darkflow score)")
    p.add_argument("--background", required=True, help="label of the SM test sample (its training events, if any, "
                   "are left out)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--calibration", help="label of the SM sample thresholds are set on (default: the validation "
                   "events of the training file, with a warning: they also chose the best epoch)")
    p.add_argument("--score", help="score name(s), comma-separated (default: every score, the file's default first)")
    p.add_argument("--eps-b", help="background efficiencies, comma-separated (default 1e-2,1e-3,1e-4); each needs "
                   "eps_B * N_eff(calibration) >= 10")
    p.add_argument("--signals", help="signal labels, comma-separated (default: every group that is not an SM sample)")
    p.add_argument("--lumi", type=float, default=1.0, help="integrated luminosity in fb^-1 for expected counts (default 1)")
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("flag", help="write the events of a sample above a threshold as candidates",
                       description="Flag events with score strictly above a threshold given as a number or as a "
                       "background efficiency on an SM calibration sample (never the flagged sample); writes a "
                       "CSV and prints the count, the calibration sample with N and N_eff, and the achieved eps_B "
                       "with its interval.")
    p.add_argument("--run", help="a trained run: score --data on the fly")
    p.add_argument("--data", help="event file (.h5) to flag, with --run")
    p.add_argument("--scores", help="scores file (.h5 from darkflow score), with --label")
    p.add_argument("--label", help="group of --scores whose events are flagged")
    p.add_argument("--out", required=True, help="candidates .csv (written atomically)")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument("--eps-b", help="target background efficiency on the calibration sample")
    way.add_argument("--threshold", type=float, help="score threshold")
    p.add_argument("--calibration", help="SM sample thresholds are set on: a group of --scores, or with --run an "
                   "SM event file (.h5) scored on the fly (default: the run's validation events, with a warning)")
    p.add_argument("--score", help="score name (default: the file's default score)")
    _add_threads(p)
    p.set_defaults(func=_cmd_flag)

    p = sub.add_parser("report", help="a Markdown and self-contained HTML report of a run, its scores and scan",
                       description="Plots (score distributions, ROC, threshold scan, SI, training curves, latent "
                       "projection) in PNG and PDF, the run's configuration and the metrics table, written as "
                       "REPORT.md with REPORT_files/ and as REPORT.html with the images embedded.")
    p.add_argument("--run", required=True, help="run directory (from darkflow train)")
    p.add_argument("--scan", required=True, help="output folder of darkflow scan")
    p.add_argument("--scores", required=True, help="scores file (.h5 from darkflow score)")
    p.add_argument("--out", required=True, help="report .md file (the .html and <stem>_files/ go next to it)")
    p.add_argument("--style", choices=["CMS", "ATLAS", "LHCb", "ALICE"],
                   help="experiment style and label (default: a neutral 'DarkFlow' label)")
    p.add_argument("--config", help="plot options YAML (see analysis/default.yaml)")
    p.add_argument("--score", help="score to plot (default: the scores file's default score)")
    _add_threads(p)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="export a trained run as an ONNX scorer (raw event arrays in, scores out)",
                       description="Write a VAE run (or a CFLOW-AD run) as ONNX: inputs objects (N, R, F) and mask "
                       "(N, R) as stored in the event file, standardization inside, outputs total, reco, kl, "
                       "latent_nll. Needs darkflow[onnx].")
    p.add_argument("--run", required=True, help="run directory (from darkflow train or darkflow cflow train)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    p.add_argument("--out", required=True, help="output file (.onnx, written atomically)")
    _add_threads(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("demo", help="the whole search end to end: generate, prepare, train, score, scan, report",
                       description="Generate an SM mixture and three signals, prepare them, train five models "
                       "(ConvVAE without flow, with planar and iaf flows, graph VAE with planar, density "
                       "baseline), score, scan and report each, and write OUT/COMPARISON.md. Existing "
                       "generated files, prepared files and trained models are reused unless --fresh.")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--quick", action="store_true", help="small sizes and models (a few minutes at most)")
    p.add_argument("--fresh", action="store_true", help="redo everything instead of reusing what exists")
    p.add_argument("--workers", type=int, default=2, help="generator worker processes (default 2)")
    _add_threads(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("cflow", help="CFLOW-AD anomaly detection and localization on images, jet images, event arrays",
                       description="CFLOW-AD (Gudovskiy et al., WACV 2022): conditional normalizing flows over "
                       "multi-scale encoder features give anomaly maps and image scores.")
    csub = p.add_subparsers(dest="cflow_command", metavar="STEP", parser_class=_Parser, required=True)
    c = csub.add_parser("train", help="train on normal images (an MVTec AD folder or .h5 files)",
                        description="Train CFLOW-AD on the normal images of an MVTec AD folder (train/good) or of "
                        "HDF5 jet-image / event files; writes RUN/cflow.pt, RUN/config.yaml, RUN/metrics.csv.")
    c.add_argument("--data", required=True, nargs="+", help="an image folder (MVTec AD layout) or .h5 file(s)")
    c.add_argument("--out", required=True, help="run directory")
    c.add_argument("--config", "--model", dest="config", help="cflow_default (default), cflow_resnet18, "
                   "cflow_wide_resnet50_2 or a .yaml file")
    c.add_argument("--encoder", choices=["builtin", "resnet18", "wide_resnet50_2"], help="override encoder.name")
    c.add_argument("--weights", help="torchvision encoders: imagenet (download), none (random) or a local .pth file")
    c.add_argument("--image-size", type=int, help="resize folder images to N x N (default 256; .h5 images keep their size)")
    c.add_argument("--epochs", type=int, help="decoder training epochs (default 10)")
    c.add_argument("--flow", help="decoder flow (any conditional flow of the registry; default cflow-coupling)")
    c.add_argument("--seed", type=int)
    c.add_argument("--accelerator", choices=["cpu", "gpu", "auto"])
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. decoder.blocks=4")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress output (no bar, no log lines)")
    _add_threads(c)
    c.set_defaults(func=_cmd_cflow_train)
    c = csub.add_parser("score", help="anomaly maps, scores, metrics and overlays of a trained run",
                        description="Writes OUT/metrics.csv (image_auroc,pixel_auroc,aupro), OUT/scores.csv, "
                        "OUT/maps.h5 and PNG overlays of the highest-scored images in OUT/overlays/.")
    c.add_argument("--run", required=True, help="run directory (from darkflow cflow train)")
    c.add_argument("--data", required=True, nargs="+", help="an image folder (MVTec AD layout) or .h5 file(s)")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--background", help=".h5 inputs: the label that is normal (default: the label the run trained on)")
    c.add_argument("--overlays", type=int, default=8, help="number of PNG overlays of the worst images (default 8)")
    _add_threads(c)
    c.set_defaults(func=_cmd_cflow_score)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``darkflow`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    func: Callable[[argparse.Namespace], int] = args.func
    return run_guarded(args.command, lambda: func(args))


def run_guarded(command: str, body: Callable[[], int]) -> int:
    """Run one command with SIGINT and SIGTERM handled and every failure reported as one line on stderr.

    Exit status: the command's own; 2 for a user error (:class:`DarkFlowError`); 130 or 143 for SIGINT or
    SIGTERM; 1 for an operating-system error (disk full, ...) or an internal error. ``DARKFLOW_DEBUG=1`` shows
    the traceback of an internal error.
    """
    import os

    from darkflow.errors import DarkFlowError, Interrupted
    from darkflow.progress import progress_interval
    from darkflow.signals import exit_status, handle_signals

    def say(kind: str, message: str) -> None:
        print(f"darkflow {command}: {kind}: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    try:
        with handle_signals():
            progress_interval()  # a malformed DARKFLOW_PROGRESS_INTERVAL fails before any work
            return body()
    except DarkFlowError as err:
        say("error", str(err))
        return 2
    except Interrupted as err:
        say("interrupted", f"{err}; no partial output was left")
        return exit_status(err)
    except KeyboardInterrupt:
        say("interrupted", "interrupted by SIGINT; no partial output was left")
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as err:
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        say("error", f"{err.strerror or err}{where}")
        return 1

    except Exception as err:
        if os.environ.get("DARKFLOW_DEBUG"):
            raise
        say("internal error", f"{type(err).__name__}: {err} (a bug: please report it with the command; "
            "DARKFLOW_DEBUG=1 shows the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
