"""The ``darkflow`` command: a table of verbs and one handler for all of them (DESIGN sections 6 and 7).

Every verb is ``Config -> run(config) -> Result`` in the package that does the work; this module only maps the
command line onto the Config, in the same order for every verb: the ``--config FILE`` YAML (a mapping of that
verb's Config keys), then the flags given, then ``--set key=value`` (dotted keys of the Config, e.g.
``--set training.learning_rate=3e-4``). The result's ``lines()`` go to standard output and its ``warnings`` to
standard error, one line each; every failure is one line on standard error (:func:`run_guarded`). Library
messages name Config keys in backticks (`eps_b`); here they are shown as the flags that set them (--eps-b).

Heavy libraries (torch, uproot, awkward, h5py, pydantic) are imported by the verb that runs, so that
``darkflow --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from darkflow import __version__


@dataclass(frozen=True)
class Flag:
    """One command-line option of a verb and the Config key it sets.

    Attributes:
        names: the option strings (``--eps-b``), or one name for a positional argument (``inputs``).
        help: the help text.
        key: the dotted Config key it sets (default: the option's name, ``-`` read as ``_``).
        type: converts the text (``int``, ``float``); ``None`` keeps it.
        choices: the valid values, checked by the parser.
        many: takes one or more values (a list).
        switch: takes no value and sets True.
        metavar: the value's name in the help.
        group: flags of the same group exclude each other.
    """

    names: tuple[str, ...]
    help: str
    key: str = ""
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    many: bool = False
    switch: bool = False
    metavar: str | None = None
    group: str | None = None

    @property
    def positional(self) -> bool:
        """A positional argument (always a list, possibly empty: the values may come from ``--config``)."""
        return not self.names[0].startswith("-")

    @property
    def dest(self) -> str:
        """The parser's attribute for the flag."""
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")

    @property
    def config_key(self) -> str:
        """The dotted Config key the flag sets."""
        return self.key or self.dest


def flag(*names: str, help: str, **options: Any) -> Flag:
    """A :class:`Flag` (keyword options as its attributes)."""
    return Flag(names, help, **options)


@dataclass(frozen=True)
class Verb:
    """One command: where its Config and run function are, its help, and its flags.

    Attributes:
        name: ``prepare``, or ``cflow train`` for a step of a command group.
        config: ``module:Config``, a :class:`darkflow.config.StrictModel` of the command's options.
        run: ``module:function`` taking the Config (and ``progress`` when ``progress`` is set) and returning a
            result with ``lines()`` and ``warnings``.
        help, description, example: for ``--help``.
        flags: the command's own flags; ``--config`` and ``--set`` are added to every verb.
        progress: the command shows progress; ``-q`` turns it off.
        threads: the command runs torch: ``--threads N`` sets its thread count before torch is imported.
        processes: the torch processes of one node, from the Config (0: none, the command runs no torch);
            ``None``: one, and the threads are set before the Config is built.
        announce: print the thread choice on standard output.
        listing: ``module:function`` returning text that ``--list`` prints instead of running the command.
    """

    name: str
    config: str
    run: str
    help: str
    description: str
    example: str
    flags: tuple[Flag, ...]
    progress: bool = False
    threads: bool = False
    processes: Callable[[Any], int] | None = None
    announce: bool = False
    listing: str | None = None


ACCELERATORS = ("cpu", "gpu", "auto")

VERBS: tuple[Verb, ...] = (
    Verb("generate", "darkflow.generate.run:GenerateConfig", "darkflow.generate.run:generate",
         help="generate Standard Model and BSM events with Pythia 8",
         description="Generate events with Pythia 8, anti-kT jets and a parametric detector; write NanoAOD-like "
         "ROOT and/or Dark Machines CSV with sigma/N weights (pb).",
         example="darkflow generate --process ttbar,qcd --events 1000 --seed 1 --out generated --workers 2",
         flags=(
             flag("--process", help="process name(s), comma-separated, a mixture (sm) or a process .yaml"),
             flag("--events", type=int, help="events per process (a mixture splits them by fraction)"),
             flag("--seed", type=int, help="random seed (default 1); the same seed gives identical files"),
             flag("--out", help="output folder (default: generated)"),
             flag("--format", choices=("root", "csv", "both"), help="output format (default root)"),
             flag("--workers", type=int, help="worker processes (default 1); each gets its own seed"),
             flag("--detector", help="detector card: default or FILE.yaml"),
             flag("--constituents", switch=True, help="also write the PF candidates (PFCands_pt, ...; ROOT only) "
                  "for jet images; files grow ~10x"),
         ), progress=True, listing="darkflow.generate.run:list_processes"),
    Verb("prepare", "darkflow.data_prep.prepare:PrepareConfig", "darkflow.data_prep.prepare:prepare",
         help="convert ROOT / Dark Machines CSV events into a padded HDF5 event file",
         description="Convert ROOT (NanoAOD, Delphes, any tree via a schema YAML) or Dark Machines CSV events into "
         "pT-ordered, zero-padded arrays in HDF5 (DESIGN section 3).",
         example="darkflow prepare ttbar.root qcd.root --out sm.h5 --channel chan2b --label sm",
         flags=(
             flag("inputs", metavar="INPUT", help="ROOT or CSV files"),
             flag("--out", help="output .h5 file (written atomically)"),
             flag("--source", help="auto (default), nanoaod, nanoaod_opendata2015, delphes, darkmachines or "
                  "FILE.yaml"),
             flag("--channel", help="none (default), chan1, chan2a, chan2b, chan3 or FILE.yaml; selecting no event "
                  "is an error (a --shard is written empty, with a note)"),
             flag("--layout", help="default (32x4), single_list or FILE.yaml"),
             flag("--objects", help="object definitions: darkmachines (default: pT/|eta| cuts, ID and isolation "
                  "where the source has them, jets removed within Delta R 0.4 of leptons and photons), kinematic "
                  "(pT/|eta| cuts only) or FILE.yaml"),
             flag("--label", help="sample label stored in the file (default: output file name)"),
             flag("--process", help="process name for every event of ROOT inputs (default: each file's name)"),
             flag("--max-events", type=int, help="read at most N events in all"),
             flag("--chunk-size", type=int, help="events read per step (default 100000); bounds memory"),
             flag("--shard", help="I/N: convert only the I-th of N equal event ranges (I from 0), for batch jobs"),
             flag("--on-error", choices=("fail", "skip"), help="malformed lines / NaN events: fail (default) or "
                  "skip and count"),
             flag("--compression", choices=("none", "gzip", "lzf"), help="HDF5 compression (default none)"),
             flag("--workers", type=int, metavar="N", group="cluster",
                  help="convert on a local Dask cluster of N processes (needs darkflow[dask])"),
             flag("--dask-scheduler", metavar="ADDR", group="cluster", help="convert on the Dask cluster at ADDR, "
                  "e.g. tcp://10.0.0.1:8786 (needs darkflow[dask])"),
         ), progress=True),
    Verb("inspect", "darkflow.data_prep.inspect:InspectConfig", "darkflow.data_prep.inspect:inspect",
         help="summarize HDF5 event files and ROOT files",
         description="Event files (.h5): counts, layout, channel, object definitions, processes and feature "
         "ranges. ROOT files: each tree's entries, branch groups (Jet_* with their count) and ungrouped branches, "
         "and which built-in source --source auto of prepare takes, and why.",
         example="darkflow inspect sm.h5 nanoAOD_2015_CMS_Open_Data_ttbar.root",
         flags=(flag("files", metavar="FILE", help="event files (.h5) and ROOT files, in any mix"),)),
    Verb("merge", "darkflow.data_prep.merge:MergeConfig", "darkflow.data_prep.merge:merge",
         help="concatenate event files (e.g. --shard outputs) into one",
         description="Concatenate event files prepared alike (layout, channel, objects) into one, streaming.",
         example="darkflow merge shards/shard_*.h5 --out sm.h5",
         flags=(
             flag("shards", metavar="SHARD.h5", help="event files to concatenate"),
             flag("--out", help="output .h5 file"),
             flag("--label", help="label of the merged sample (default: the first input's)"),
         )),
    Verb("jetimages", "darkflow.jetimages.make:JetImagesConfig", "darkflow.jetimages.make:make_jet_images",
         help="pT-weighted eta-phi images of the leading large-R jet (or of the event)",
         description="ROOT files with PF candidates (darkflow generate --constituents, PFNano): anti-kT jets of "
         "radius R, the leading jet's constituents centred, rotated, flipped and normalised to unit pT. Prepared "
         ".h5 event files: the event's objects around the leading jet (+-pi). Writes images (N, 1, S, S) and the "
         "leading jet's kinematics to HDF5.",
         example="darkflow jetimages qcd.root --out jets.h5 --size 32",
         flags=(
             flag("inputs", metavar="INPUT", help="ROOT files with PFCands_* or .h5 event files"),
             flag("--out", help="output .h5 file (written atomically)"),
             flag("--size", type=int, help="pixels per side (default 32)"),
             flag("--radius", type=float, help="jet radius R and image half-width (default 0.8)"),
             flag("--max-events", type=int, help="read at most N events in all"),
             flag("--label", help="sample label stored in the file (default: output file name)"),
             flag("--jet-pt-min", type=float, help="leading-jet pT threshold in GeV (default 20)"),
             flag("--jet-pt-max", type=float, help="leading-jet pT upper bound in GeV (default none)"),
             flag("--jet-abs-eta-max", type=float, help="leading-jet |eta| bound (default none)"),
         ), progress=True),
    Verb("train", "darkflow.train.config:TrainCommandConfig", "darkflow.train.run:run",
         help="train a VAE (or a baseline) on a Standard Model event file",
         description="Train with Lightning on CPU, GPU or several devices; writes a run directory. The model "
         "recipe (--model) can be changed key by key: --set model.latent=4, --set training.learning_rate=3e-4, "
         "or 'model:' / 'training:' mappings in the --config file.",
         example="darkflow train --data sm.h5 --model convvae --flow maf --epochs 30 --out runs/conv_maf",
         flags=(
             flag("--data", help="the Standard Model event file (.h5 from darkflow prepare)"),
             flag("--model", key="recipe", help="convvae (default), graphvae, density, hlf_density, svdd, "
                  "isoforest or a models/*.yaml"),
             flag("--out", help="run directory"),
             flag("--flow", key="model.flow", help="the flow on the latent posterior (any name of the flow registry)"),
             flag("--encoder", key="model.encoder", choices=("conv", "graph"), help="the VAE's encoder"),
             flag("--epochs", key="training.epochs", type=int, help="maximum training epochs"),
             flag("--batch-size", key="training.batch_size", type=int, help="events per batch"),
             flag("--seed", key="training.seed", type=int, help="seed of the split, initialisation and batches"),
             flag("--resume", switch=True, help="continue from the run's last checkpoint"),
             flag("--accelerator", key="training.accelerator", choices=ACCELERATORS, help="device kind"),
             flag("--devices", key="training.devices", type=int, help="devices (processes) per node"),
             flag("--strategy", key="training.strategy", choices=("auto", "ddp"), help="Lightning strategy"),
             flag("--num-nodes", key="training.num_nodes", type=int, help="nodes of a DDP run"),
         ), progress=True, threads=True, processes=lambda c: c.train_config.training.devices, announce=True),
    Verb("score", "darkflow.train.score:ScoreConfig", "darkflow.train.score:run",
         help="score event files with a trained model",
         description="Write one group per input: the model's scores, the cut baselines hlf:NAME (each high-level "
         "feature but MET_phi), weight, event_id, process and split (0/1: training/validation events of the "
         "training file). Inputs prepared with another channel, object definitions or source than the training "
         "file are reported (--strict: refused); inputs holding training-file events are reported and marked. "
         "With --workers or --dask-scheduler the events are scored in parts on a Dask cluster (on the workers' "
         "GPUs where they have one) and the file is the single-process one.",
         example="darkflow score --run runs/conv_maf --data sm_cal.h5 sm_test.h5 zprime.h5 --out scores.h5",
         flags=(
             flag("--run", help="run directory (or its model.pt)"),
             flag("--data", many=True, help="event files (.h5); each becomes a group by its label"),
             flag("--out", help="scores file (.h5); never one of the inputs"),
             flag("--strict", switch=True, help="refuse inputs whose channel, object definitions or source differ "
                  "from the training file's (default: a warning per input and difference)"),
             flag("--workers", type=int, metavar="N", group="cluster",
                  help="score on a local Dask cluster of N processes (needs darkflow[dask])"),
             flag("--dask-scheduler", metavar="ADDR", group="cluster", help="score on the Dask cluster at ADDR, "
                  "e.g. tcp://10.0.0.1:8786 (needs darkflow[dask])"),
         ), threads=True),
    Verb("scan", "darkflow.analysis.scan:ScanConfig", "darkflow.analysis.scan:scan",
         help="metrics at fixed background efficiency and threshold scans of a scores file",
         description="Four disjoint SM samples: the run's training and validation events, a calibration sample "
         "(--calibration: thresholds) and a test sample (--background: AUC, eps_B). Prints the roles with N and "
         "N_eff; writes thresholds.json, metrics.csv, metrics.json and scan.csv with intervals and effective "
         "event counts, and per score the ROC (roc_SCORE), threshold scan (scan_SCORE) and significance "
         "improvement (si_SCORE) plots as PNG and PDF.",
         example="darkflow scan --scores scores.h5 --background sm_test --calibration sm_cal --out scan",
         flags=(
             flag("--scores", help="scores file (.h5 from darkflow score)"),
             flag("--background", help="label of the SM test sample (its training events, if any, are left out)"),
             flag("--out", help="output folder"),
             flag("--calibration", help="label of the SM sample thresholds are set on (default: the validation "
                  "events of the training file, with a warning: they also chose the best epoch)"),
             flag("--score", help="score name(s), comma-separated (default: every score, the file's default first)"),
             flag("--eps-b", help="background efficiencies, comma-separated (default 1e-2,1e-3,1e-4); each needs "
                  "eps_B * N_eff(calibration) >= 10"),
             flag("--signals", help="signal labels, comma-separated (default: every group that is not an SM sample)"),
             flag("--lumi", type=float, help="integrated luminosity in fb^-1 for expected counts (default 1)"),
             flag("--style", choices=("CMS", "ATLAS", "LHCb", "ALICE"),
                  help="experiment style and label of the plots (default: a neutral 'DarkFlow' label)"),
             flag("--plot-options", metavar="FILE", help="plot options YAML (see analysis/default.yaml)"),
             flag("--no-plots", switch=True, help="write the tables only, no plots (faster with many scores)"),
         )),
    Verb("flag", "darkflow.analysis.flag:FlagConfig", "darkflow.analysis.flag:run",
         help="write the events of a sample above a threshold as candidates",
         description="Flag events with score strictly above a threshold given as a number or as a background "
         "efficiency on an SM calibration sample (never the flagged sample); prints the count, the calibration "
         "sample with N and N_eff, and the achieved eps_B with its interval. Both forms (--scores --label, --run "
         "--data) write the same CSV, highest score first: two '#' lines (threshold, eps_B, calibration, run, "
         "score; sample, events, flagged), then event_id, process, the scores, weight and the high-level features "
         "(MET, HT, m_eff, multiplicities).",
         example="darkflow flag --run runs/conv_maf --data zprime.h5 --eps-b 1e-3 --calibration sm_cal.h5 "
         "--out candidates.csv",
         flags=(
             flag("--run", help="a trained run: score --data on the fly"),
             flag("--data", help="event file (.h5) to flag, with --run"),
             flag("--scores", help="scores file (.h5 from darkflow score), with --label"),
             flag("--label", help="group of --scores whose events are flagged"),
             flag("--out", help="candidates .csv (written atomically; read it with pandas.read_csv(path, "
                  "comment='#'))"),
             flag("--eps-b", group="threshold", help="target background efficiency on the calibration sample"),
             flag("--threshold", type=float, group="threshold", help="score threshold"),
             flag("--calibration", help="SM sample thresholds are set on: a group of --scores, or with --run an SM "
                  "event file (.h5) scored on the fly (default: the run's validation events, with a warning)"),
             flag("--score", help="score name (default: the file's default score)"),
         ), threads=True, processes=lambda c: 1 if c.run is not None else 0),
    Verb("report", "darkflow.analysis.report:ReportConfig", "darkflow.analysis.report:report",
         help="a Markdown and self-contained HTML report of a scores file and its scan (and of the run)",
         description="The metrics per signal first, what needs attention, plots (score distributions, ROC, "
         "threshold scan, SI; with --run also training curves and latent projection) in PNG and PDF, thresholds, "
         "every number of the scan, the samples' roles and, folded, the run's configuration; written as REPORT.md "
         "with REPORT_files/ and as REPORT.html with the images embedded. Without --run the report is made from "
         "the scores file and the scan alone (any scores file, also one with only the hlf: cut baselines).",
         example="darkflow report --run runs/conv_maf --scan scan --scores scores.h5 --out report/REPORT.md",
         flags=(
             flag("--run", help="run directory (from darkflow train; optional: adds training curves, the latent "
                  "projection and the configuration)"),
             flag("--scan", help="output folder of darkflow scan"),
             flag("--scores", help="scores file (.h5 from darkflow score)"),
             flag("--out", help="report .md file (the .html and <stem>_files/ go next to it)"),
             flag("--style", choices=("CMS", "ATLAS", "LHCb", "ALICE"),
                  help="experiment style and label (default: a neutral 'DarkFlow' label)"),
             flag("--plot-options", metavar="FILE", help="plot options YAML (see analysis/default.yaml)"),
             flag("--score", help="score to plot (default: the scores file's default score when the scan has it, "
                  "else the scan's first score)"),
         ), threads=True),
    Verb("export", "darkflow.train.export:ExportConfig", "darkflow.train.export:run",
         help="export a trained run as an ONNX scorer (raw event arrays in, scores out)",
         description="Write a VAE run (or a CFLOW-AD run) as ONNX: inputs objects (N, R, F) and mask (N, R) as "
         "stored in the event file, standardization inside, outputs total, reco, kl, latent_nll. Needs "
         "darkflow[onnx].",
         example="darkflow export --run runs/conv_maf --format onnx --out model.onnx",
         flags=(
             flag("--run", help="run directory (from darkflow train or darkflow cflow train)"),
             flag("--format", choices=("onnx",), help="export format (onnx)"),
             flag("--out", help="output file (.onnx, written atomically)"),
         ), threads=True),
    Verb("demo", "darkflow.demo:DemoConfig", "darkflow.demo:run",
         help="the whole search end to end: generate, prepare, train, score, scan, report",
         description="Generate an SM mixture and three signals, prepare them, train the default recipe, the "
         "previous default, the graph VAE and the density, HLF-density and Deep SVDD baselines, score, scan and "
         "report each, and write OUT/COMPARISON.md. Existing generated files, prepared files and trained models "
         "are reused unless --fresh.",
         example="darkflow demo --quick --out demo_output",
         flags=(
             flag("--out", help="output folder (default demo_output)"),
             flag("--quick", switch=True, help="small sizes and models (a few minutes at most)"),
             flag("--fresh", switch=True, help="redo everything instead of reusing what exists"),
             flag("--workers", type=int, help="generator worker processes (default 2)"),
         ), threads=True),
    Verb("cflow train", "darkflow.cflow.config:CflowTrainCommandConfig", "darkflow.cflow.train:run",
         help="train on normal images (an MVTec AD folder or .h5 files)",
         description="Train CFLOW-AD on the normal images of an MVTec AD folder (train/good) or of HDF5 jet-image / "
         "event files, or fit its closed-form Gaussian special case (--model mvg, no training); writes "
         "RUN/cflow.pt, RUN/config.yaml, RUN/metrics.csv.",
         example="darkflow cflow train --data textures --out runs/cflow_textures   # --model mvg: the Gaussian",
         flags=(
             flag("--data", many=True, help="an image folder (MVTec AD layout) or .h5 file(s)"),
             flag("--out", help="run directory"),
             flag("--model", help="cflow_default (default), mvg (the closed-form Gaussian, no decoder), "
                  "cflow_resnet18, cflow_wide_resnet50_2 or a .yaml file"),
             flag("--encoder", key="encoder.name", choices=("builtin", "resnet18", "wide_resnet50_2"),
                  help="the image encoder"),
             flag("--weights", key="encoder.weights", help="torchvision encoders: imagenet (download), none "
                  "(random) or a local .pth file"),
             flag("--image-size", type=int, help="resize folder images to N x N (default: keep their size; .h5 "
                  "images always keep theirs)"),
             flag("--covariance", key="gaussian.covariance", choices=("position", "shared", "none"),
                  help="the Gaussian of every scale: a covariance per position (default), one shared by the "
                  "positions, or none (decoders on unwhitened features)"),
             flag("--epochs", key="training.epochs", type=int, help="decoder training epochs (default 5)"),
             flag("--flow", key="decoder.flow", help="decoder flow (any conditional flow of the registry; default "
                  "cflow-coupling)"),
             flag("--seed", key="training.seed", type=int, help="seed of the split and initialisation"),
             flag("--accelerator", key="training.accelerator", choices=ACCELERATORS, help="device kind"),
             flag("--precision", key="training.precision", choices=("32", "bf16"),
                  help="32 (default) or bf16 autocast (GPUs with bfloat16)"),
         ), progress=True, threads=True, processes=lambda c: c.cflow_config.training.devices, announce=True),
    Verb("cflow score", "darkflow.cflow.score:CflowScoreConfig", "darkflow.cflow.score:run",
         help="anomaly maps, scores, metrics and overlays of a trained run",
         description="Writes OUT/metrics.csv (image_auroc,pixel_auroc,aupro), OUT/scores.csv, OUT/maps.h5 and PNG "
         "overlays of the highest-scored images in OUT/overlays/.",
         example="darkflow cflow score --run runs/cflow_textures --data textures --out cflow_scores",
         flags=(
             flag("--run", help="run directory (from darkflow cflow train)"),
             flag("--data", many=True, help="an image folder (MVTec AD layout) or .h5 file(s)"),
             flag("--out", help="output folder"),
             flag("--background", help=".h5 inputs: the label that is normal (default: the label the run trained on)"),
             flag("--overlays", type=int, help="number of PNG overlays of the worst images (default 8)"),
         ), threads=True),
)
GROUPS = {
    "cflow": ("CFLOW-AD anomaly detection and localization on images, jet images, event arrays",
              "CFLOW-AD (Gudovskiy et al., WACV 2022): conditional normalizing flows over multi-scale encoder "
              "features give anomaly maps and image scores.",
              "darkflow cflow train --data textures --out runs/cflow_textures"),
}
"""Command groups: name -> (help, description, example)."""
RESERVED = ("command", "verb", "config", "set", "quiet", "threads", "list")
"""Parser attributes of the handler itself, never a flag's."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point to ``--help``, and an ``example`` command line printed last in
    ``--help`` as given (not wrapped, so that it can be copied)."""

    def __init__(self, *args: Any, example: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.example = example

    def format_help(self) -> str:
        text = super().format_help()
        return f"{text}\nexample: {self.example}\n" if self.example else text

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


def _with_key(item: Flag) -> str:
    return item.help if item.config_key == item.dest else f"{item.help} (key {item.config_key})"


def _add_verb(parser: argparse.ArgumentParser, verb: Verb) -> None:
    """The verb's flags, then the ones every verb has."""
    groups: dict[str, Any] = {}
    for item in verb.flags:
        assert item.dest not in RESERVED, item.dest
        if item.group is not None and item.group not in groups:
            groups[item.group] = parser.add_mutually_exclusive_group()
        target = parser if item.group is None else groups[item.group]
        if item.positional:
            target.add_argument(item.dest, nargs="*", metavar=item.metavar, help=_with_key(item))
        elif item.switch:
            target.add_argument(*item.names, dest=item.dest, action="store_true", default=None, help=_with_key(item))
        else:
            target.add_argument(*item.names, dest=item.dest, type=item.type, choices=item.choices,
                                nargs="+" if item.many else None, metavar=item.metavar, help=_with_key(item))
    parser.add_argument("--config", metavar="FILE", help="YAML file of these options by key (the flag's name "
                        "with _ for -, or the key shown); flags given here override it")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="set any option by its dotted key after the file and the flags, e.g. --set "
                        f"{_example_key(verb)}; the value is read as YAML")
    if verb.progress:
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress output (no bar, no log lines)")
    if verb.threads:
        parser.add_argument("--threads", type=_thread_count, metavar="N",
                            help="torch threads per process (default: OMP_NUM_THREADS if set, else the cores this "
                            "process may use, from its CPU affinity and cgroup quota, shared among DDP processes)")
    if verb.listing:
        parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.set_defaults(verb=verb)


def _example_key(verb: Verb) -> str:
    dotted = [f.config_key for f in verb.flags if "." in f.config_key]
    return f"{dotted[0]}=..." if dotted else f"{verb.flags[-1].config_key}=..."


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to document the CLI)."""
    parser = _Parser(prog="darkflow", description="Model-independent new-physics searches with flow VAEs.",
                     epilog="'darkflow COMMAND --help' shows a command's options and an example.",
                     example="darkflow demo --quick --out demo_output")
    parser.add_argument("--version", action="version", version=f"darkflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                                help="one of the commands below")
    steps: dict[str, Any] = {}
    for verb in VERBS:
        head, _, step = verb.name.partition(" ")
        where = sub
        if step:
            if head not in steps:
                group_help, group_description, group_example = GROUPS[head]
                group = sub.add_parser(head, help=group_help, description=group_description, example=group_example,
                                       epilog=f"'darkflow {head} STEP --help' shows a step's options and an example.")
                steps[head] = group.add_subparsers(dest=f"{head}_command", metavar="STEP", parser_class=_Parser,
                                                   required=True, help="one of the steps below")
            where = steps[head]
        parser_of_verb = where.add_parser(step or head, help=verb.help, description=verb.description,
                                          example=verb.example)
        _add_verb(parser_of_verb, verb)
    return parser


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _config_data(verb: Verb, args: argparse.Namespace) -> dict[str, Any]:
    """The Config as a mapping: the ``--config`` file, then the flags given, then the ``--set`` overrides."""
    from darkflow.config import apply_overrides, parse_override, read_yaml

    data = read_yaml(args.config, "config file") if args.config else {}
    given = {item.config_key: getattr(args, item.dest) for item in verb.flags}
    data = apply_overrides(data, {k: v for k, v in given.items() if v is not None and v != []})
    return apply_overrides(data, dict(parse_override(text) for text in args.set or []))


def _build(verb: Verb, args: argparse.Namespace) -> Any:
    from darkflow.config import validate

    return validate(_load(verb.config), _config_data(verb, args), "")


def parse(argv: Sequence[str]) -> tuple[str, Any]:
    """The verb's name and its validated Config for a command line (``darkflow`` left out), without running it.

    Raises :class:`darkflow.errors.DarkFlowError` for a bad option value, ``SystemExit`` for what the parser
    refuses (an unknown flag, a value of the wrong type)."""
    from darkflow.errors import ConfigError

    args = build_parser().parse_args(list(argv))
    verb = getattr(args, "verb", None)
    if verb is None:
        raise ConfigError("no command given; see 'darkflow --help'")
    return verb.name, _build(verb, args)


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


def _handle(verb: Verb, args: argparse.Namespace) -> int:
    """Build the verb's Config, run it, print its result."""
    if verb.listing and args.list:
        print(_load(verb.listing)())
        return 0
    if verb.threads and verb.processes is None:
        _use_threads(args)
    config = _build(verb, args)
    if verb.threads and verb.processes is not None:
        processes = verb.processes(config)
        if processes:
            _use_threads(args, processes, announce=verb.announce)
    run = _load(verb.run)
    result = run(config, progress=not args.quiet) if verb.progress else run(config)
    for line in result.lines():
        print(line)
    for line in result.warnings:
        print(f"darkflow {verb.name}: warning: {flags_named(line, verb.name)}", file=sys.stderr)
    return 0


_KEY = re.compile(r"`([A-Za-z_][\w.]*)`")


def _flag_names(verb: Verb | None) -> dict[str, str]:
    return {item.config_key: item.names[0] for item in (verb.flags if verb else ()) if not item.positional}


def flags_named(message: str, verb: str = "") -> str:
    """``message`` with every backticked Config key shown as the flag that sets it: the verb's own flag, else the
    flag of another verb with that key (`constituents` -> --constituents); other backticked text stays."""
    own = _flag_names(next((v for v in VERBS if v.name == verb), None))
    every = {key: name for v in reversed(VERBS) for key, name in _flag_names(v).items()}

    def shown(match: re.Match[str]) -> str:
        return own.get(match.group(1)) or every.get(match.group(1)) or match.group(0)

    return _KEY.sub(shown, message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``darkflow`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verb: Verb | None = getattr(args, "verb", None)
    if verb is None:
        parser.print_help()
        return 0
    return run_guarded(verb.name, lambda: _handle(verb, args))


def run_guarded(command: str, body: Callable[[], int]) -> int:
    """Run one command with SIGINT and SIGTERM handled and every failure reported as one line on stderr.

    Exit status: the command's own; 2 for a user error (:class:`DarkFlowError`); 130 or 143 for SIGINT or
    SIGTERM; 1 for an operating-system error (disk full, ...) or an internal error. ``DARKFLOW_DEBUG=1`` shows
    the traceback of an internal error. Config keys in backticks are shown as the command's flags.
    """
    import os

    from darkflow.errors import DarkFlowError, Interrupted
    from darkflow.progress import progress_interval
    from darkflow.signals import exit_status, handle_signals

    def say(kind: str, message: str) -> None:
        text = flags_named(" ".join(str(message).split()), command)
        print(f"darkflow {command}: {kind + ': ' if kind else ''}{text}", file=sys.stderr, flush=True)

    try:
        with handle_signals():
            progress_interval()  # a malformed DARKFLOW_PROGRESS_INTERVAL fails before any work
            return body()
    except DarkFlowError as err:
        say("error", str(err))
        return 2
    except Interrupted as err:
        say("", f"{err}; no partial output was left")
        return exit_status(err)
    except KeyboardInterrupt:
        say("", "interrupted by SIGINT; no partial output was left")
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
