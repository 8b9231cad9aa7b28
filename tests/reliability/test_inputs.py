"""Input files that cannot be used, for every command that reads one: one line that says what is wrong.

Missing files, folders, FIFOs and ``/dev/zero`` (each named as what it is: "is a folder" is not "not found"), empty
files, text named ``.h5``, truncated and damaged HDF5, event files without datasets or with the wrong dtype,
scores files with a group without ``weight`` or without the asked label, malformed Dark Machines CSV, ROOT files
without the tree or a branch, CFLOW image folders that are empty or hold masks of the wrong size.
``/dev/zero`` runs in a subprocess with a memory limit: a build that reads it would read without end.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import TINY_VAE, Case, check, damaged_events, dark_machines_lines, ids, world

NOT_FOUND = ("not found|no such file|does not exist",)
FOLDER = ("folder|directory",)
SPECIAL = ("fifo|regular file|device",)
NOT_HDF5 = ("hdf5",)
TRUNCATED = ("truncated|damaged|incomplete",)
MISLEADING = ("not found",)


def text_h5(s) -> str:
    return s.write("text.h5", "this is a text file, not HDF5\n")


def empty(name: str):
    return lambda s: s.write(name, b"")


def truncated_h5(s) -> str:
    return s.truncated(s.sm_h5, "cut.h5", 0.6)


def csv_with(line_no: int, line: str):
    """A valid Dark Machines CSV with line ``line_no`` (1-based) replaced."""
    def make(s) -> str:
        lines = dark_machines_lines(10, seed=5)
        lines[line_no - 1] = line
        return s.write("bad.csv", "\n".join(lines) + "\n")
    return make


def root_file(name: str, tree: str = "Events", drop: str | None = None):
    """A small NanoAOD-like ROOT file, with another tree name or one branch of ``Jet`` left out."""
    def make(s) -> str:
        import awkward as ak
        from conftest import random_nanoaod, write_tree

        data = random_nanoaod(np.random.default_rng(11), 30)
        if drop is not None:
            data["Jet"] = data["Jet"][[f for f in ak.fields(data["Jet"]) if f != drop]]
        return str(write_tree(s.path(name), data, tree=tree))
    return make


def scores_without(group: str, dataset: str):
    def edit(h) -> None:
        del h[group][dataset]
    return lambda s: s.h5("scores-damaged.h5", edit, source=s.scores)


def mask_of_size(size: int):
    """A copy of the CFLOW image folder whose first ``stripes`` mask is ``size x size`` (the images: 32 x 32)."""
    def make(s) -> str:
        from PIL import Image

        folder = s.copy(s.tex, "tex-masks")
        mask = s.path("tex-masks/ground_truth/stripes/000_mask.png")
        Image.fromarray(np.full((size, size), 255, dtype=np.uint8)).save(mask)
        return folder
    return make


def inspect(make):
    return lambda s: ["inspect", make(s)]


def prepare(make, *extra: str):
    return lambda s: ["prepare", make(s), "--out", s.out("x.h5"), "-q", *extra]


def merge(make):
    return lambda s: ["merge", s.sm_h5, make(s), "--out", s.out("m.h5")]


def jetimages(make):
    return lambda s: ["jetimages", make(s), "--out", s.out("j.h5"), "-q"]


def train(make):
    return lambda s: ["train", "--data", make(s), "--out", s.out("run"), "--epochs", "1", "-q", *TINY_VAE]


def score(make):
    return lambda s: ["score", "--run", s.run, "--data", make(s), "--out", s.out("s.h5")]


def scan(make=None, *extra: str, background: str = "smtest"):
    return lambda s: ["scan", "--scores", make(s) if make else s.scores, "--background", background,
                      "--calibration", "smcal", "--eps-b", "0.1", "--out", s.out("scan"), *extra]


def flag(make=None, *extra: str, label: str = "sig"):
    return lambda s: ["flag", "--scores", make(s) if make else s.scores, "--label", label, "--eps-b", "0.1",
                      "--out", s.out("c.csv"), *(extra or ("--calibration", "smcal"))]


def cflow_train(make):
    return lambda s: ["cflow", "train", "--data", make(s), "--out", s.out("crun"), "--epochs", "1", "-q",
                      "--image-size", "32"]


def cflow_score(make, *extra: str, run: str = "crun"):
    return lambda s: ["cflow", "score", "--run", getattr(s, run), "--data", make(s), "--out", s.out("cs"),
                      "--overlays", "1", *extra]


def missing(name: str):
    return lambda s: s.out(name)


def folder(name: str):
    return lambda s: s.folder(name)


def fifo(name: str):
    return lambda s: s.fifo(name)


def dev_zero(s) -> str:
    return "/dev/zero"


CASES = [
    # inspect
    Case("inspect-missing", inspect(missing("none.h5")), NOT_FOUND),
    Case("inspect-folder", inspect(folder("dir.h5")), FOLDER, MISLEADING),
    Case("inspect-fifo", inspect(fifo("pipe.h5")), SPECIAL, MISLEADING),
    Case("inspect-dev-zero", inspect(dev_zero), SPECIAL, MISLEADING, subprocess=True),
    Case("inspect-empty", inspect(empty("empty.h5")), ("empty",)),
    Case("inspect-text", inspect(text_h5), NOT_HDF5),
    Case("inspect-truncated", inspect(truncated_h5), TRUNCATED),
    Case("inspect-no-datasets", inspect(damaged_events("no-datasets")), ("objects",)),
    Case("inspect-objects-int32", inspect(damaged_events("objects-int32")), ("objects",)),
    Case("inspect-mask-short", inspect(damaged_events("mask-short")), ("mask",)),
    Case("inspect-layout-not-json", inspect(damaged_events("layout-not-json")), ("layout",)),
    Case("inspect-scores-file", inspect(lambda s: s.scores), ("objects|event file",)),
    Case("inspect-truncated-root", inspect(lambda s: s.truncated(s.sm_root, "cut.root", 0.5)), ("cut.root",)),
    Case("inspect-text-named-root", inspect(lambda s: s.write("text.root", "hello\n")), ("not a root file",)),
    # merge
    Case("merge-folder", merge(folder("dir.h5")), FOLDER, MISLEADING),
    Case("merge-text", merge(text_h5), NOT_HDF5),
    Case("merge-truncated", merge(truncated_h5), TRUNCATED),
    Case("merge-no-datasets", merge(damaged_events("no-datasets")), ("objects",)),
    Case("merge-objects-int32", merge(damaged_events("objects-int32")), ("objects",)),
    Case("merge-jet-images", merge(lambda s: s.img), ("objects|event file",)),
    Case("merge-missing", merge(missing("none.h5")), NOT_FOUND),
    # prepare
    Case("prepare-missing", prepare(missing("none.root")), NOT_FOUND),
    Case("prepare-folder", prepare(folder("dir.root")), FOLDER, MISLEADING),
    Case("prepare-fifo", prepare(fifo("pipe.root")), SPECIAL, MISLEADING),
    Case("prepare-dev-zero", prepare(dev_zero), SPECIAL, MISLEADING, subprocess=True),
    Case("prepare-dev-zero-as-csv", prepare(dev_zero, "--source", "darkmachines"), SPECIAL, MISLEADING,
         subprocess=True),
    Case("prepare-empty", prepare(empty("empty.root")), ("empty",)),
    Case("prepare-text-named-root", prepare(lambda s: s.write("text.root", "hello\n"), "--source", "nanoaod"),
         ("root",)),
    Case("prepare-event-file", prepare(lambda s: s.sm_h5), ("sm.h5",)),
    Case("prepare-truncated-root", prepare(lambda s: s.truncated(s.sm_root, "cut.root", 0.5), "--source",
                                           "nanoaod"), ("cut.root",)),
    Case("prepare-csv-malformed-line", prepare(csv_with(3, "3;ttbar;1.0;abc;0.1;")), ("3",)),
    Case("prepare-csv-short-object", prepare(csv_with(4, "4;ttbar;1.0;5000;0.1;j,100,200,0.1;")), (":4",)),
    Case("prepare-csv-unknown-code", prepare(csv_with(2, "2;ttbar;1.0;5000;0.1;t,50000,40000,0.1,0.2;")),
         ("'t'",)),
    Case("prepare-csv-nan", prepare(csv_with(5, "5;ttbar;1.0;nan;0.1;j,50000,40000,0.1,0.2;")), ("nan",)),
    Case("prepare-root-without-tree", prepare(root_file("other.root", tree="Other"), "--source", "nanoaod"),
         ("tree",)),
    Case("prepare-root-without-branch", prepare(root_file("nobtag.root", drop="btagDeepB"), "--source", "nanoaod"),
         ("Jet_btagDeepB",)),
    Case("prepare-root-auto-no-schema", prepare(root_file("other.root", tree="Other")), ("schema|source",)),
    # jetimages
    Case("jetimages-missing", jetimages(missing("none.h5")), NOT_FOUND),
    Case("jetimages-folder", jetimages(folder("dir.h5")), FOLDER, MISLEADING),
    Case("jetimages-text", jetimages(text_h5), NOT_HDF5),
    Case("jetimages-truncated", jetimages(truncated_h5), TRUNCATED),
    Case("jetimages-no-datasets", jetimages(damaged_events("no-datasets")), ("objects",)),
    Case("jetimages-root-without-constituents", jetimages(lambda s: s.sm_root), ("PFCands",)),
    # train
    Case("train-data-missing", train(missing("none.h5")), NOT_FOUND),
    Case("train-data-folder", train(folder("dir.h5")), FOLDER, MISLEADING),
    Case("train-data-fifo", train(fifo("pipe.h5")), SPECIAL, MISLEADING),
    Case("train-data-empty", train(empty("empty.h5")), ("empty",)),
    Case("train-data-text", train(text_h5), NOT_HDF5),
    Case("train-data-truncated", train(truncated_h5), TRUNCATED),
    Case("train-data-no-datasets", train(damaged_events("no-datasets")), ("objects",)),
    Case("train-data-objects-int32", train(damaged_events("objects-int32")), ("objects",)),
    Case("train-data-mask-short", train(damaged_events("mask-short")), ("mask",)),
    Case("train-data-jet-images", train(lambda s: s.img), ("objects|event file",)),
    # score
    Case("score-data-missing", score(missing("none.h5")), NOT_FOUND),
    Case("score-data-folder", score(folder("dir.h5")), FOLDER, MISLEADING),
    Case("score-data-dev-zero", score(dev_zero), SPECIAL, MISLEADING, subprocess=True),
    Case("score-data-text", score(text_h5), NOT_HDF5),
    Case("score-data-truncated", score(truncated_h5), TRUNCATED),
    Case("score-data-no-datasets", score(damaged_events("no-datasets")), ("objects",)),
    Case("score-data-objects-int32", score(damaged_events("objects-int32")), ("objects",)),
    Case("score-data-scores-file", score(lambda s: s.scores), ("objects|event file",)),
    Case("score-data-weight-inf", score(damaged_events("weight-inf")), ("weight",)),
    # scan
    Case("scan-scores-missing", scan(missing("none.h5")), NOT_FOUND),
    Case("scan-scores-folder", scan(folder("dir.h5")), FOLDER, MISLEADING),
    Case("scan-scores-text", scan(text_h5), NOT_HDF5),
    Case("scan-scores-truncated", scan(lambda s: s.truncated(s.scores, "cut.h5", 0.6)), TRUNCATED),
    Case("scan-scores-is-event-file", scan(lambda s: s.sm_h5), ("score group|scores file",)),
    Case("scan-signal-without-weight", scan(scores_without("sig", "weight")), ("weight",), ("no signal",)),
    Case("scan-background-without-weight", scan(scores_without("smtest", "weight")), ("weight",)),
    Case("scan-signal-without-score", scan(scores_without("sig", "latent_nll"), "--score", "latent_nll"),
         ("latent_nll",)),
    Case("scan-unknown-background", scan(background="nolabel"), ("nolabel",)),
    Case("scan-unknown-calibration", scan(None, "--calibration", "nolabel"), ("nolabel",)),
    Case("scan-unknown-signal", scan(None, "--signals", "nolabel"), ("nolabel",)),
    Case("scan-unknown-score", scan(None, "--score", "noscore"), ("noscore",)),
    # flag
    Case("flag-label-without-weight", flag(scores_without("sig", "weight")), ("weight",)),
    Case("flag-unknown-label", flag(label="nolabel"), ("nolabel",)),
    Case("flag-unknown-calibration", flag(None, "--calibration", "nolabel"), ("nolabel",)),
    Case("flag-unknown-score", flag(None, "--calibration", "smcal", "--score", "noscore"), ("noscore",)),
    Case("flag-calibration-is-flagged-sample", flag(None, "--calibration", "sig"), ("sig",)),
    Case("flag-run-data-text", lambda s: ["flag", "--run", s.run, "--data", text_h5(s), "--eps-b", "0.1",
                                          "--calibration", s.smcal_h5, "--out", s.out("c.csv")], NOT_HDF5),
    Case("flag-run-data-missing", lambda s: ["flag", "--run", s.run, "--data", s.out("none.h5"), "--eps-b", "0.1",
                                             "--calibration", s.smcal_h5, "--out", s.out("c.csv")], NOT_FOUND),
    # report
    Case("report-scan-missing", lambda s: ["report", "--run", s.run, "--scan", s.out("noscan"), "--scores",
                                           s.scores, "--out", s.out("r.md")], NOT_FOUND),
    Case("report-scan-empty", lambda s: ["report", "--run", s.run, "--scan", s.folder("emptyscan", with_file=False),
                                         "--scores", s.scores, "--out", s.out("r.md")], ("metrics",)),
    Case("report-scan-is-file", lambda s: ["report", "--run", s.run, "--scan", s.scores, "--scores", s.scores,
                                           "--out", s.out("r.md")], ("folder|directory",), MISLEADING),
    Case("report-scores-text", lambda s: ["report", "--run", s.run, "--scan", s.scan, "--scores", text_h5(s),
                                          "--out", s.out("r.md")], NOT_HDF5),
    Case("report-scores-folder", lambda s: ["report", "--run", s.run, "--scan", s.scan, "--scores",
                                            s.folder("dir.h5"), "--out", s.out("r.md")], FOLDER, MISLEADING),
    Case("report-run-is-file", lambda s: ["report", "--run", s.sm_h5, "--scan", s.scan, "--scores", s.scores,
                                          "--out", s.out("r.md")], ("folder|directory",), MISLEADING),
    # cflow train
    Case("cflow-train-empty-folder", cflow_train(lambda s: s.folder("noimages", with_file=False)), ("no images",)),
    Case("cflow-train-missing", cflow_train(missing("nofolder")), NOT_FOUND),
    Case("cflow-train-text-h5", cflow_train(text_h5), NOT_HDF5),
    Case("cflow-train-folder-without-train", cflow_train(lambda s: s.scan), ("train/good|no images",)),
    Case("cflow-train-truncated-h5", cflow_train(truncated_h5), TRUNCATED),
    # cflow score
    Case("cflow-score-empty-folder", cflow_score(lambda s: s.folder("noimages", with_file=False)), ("no images",)),
    Case("cflow-score-mask-8x8", cflow_score(mask_of_size(8)), ("mask", "8x8")),
    Case("cflow-score-mask-64x64", cflow_score(mask_of_size(64)), ("mask", "64x64")),
    Case("cflow-score-missing", cflow_score(missing("nofolder")), NOT_FOUND),
    Case("cflow-score-text-h5", cflow_score(text_h5), NOT_HDF5),
    Case("cflow-score-folder-run-on-h5", cflow_score(lambda s: s.img), ("image|size|kind",)),
    # generate
    Case("generate-unknown-process", lambda s: ["generate", "--process", "bogusprocess", "--events", "5", "--out",
                                                s.out("gen"), "-q"], ("bogusprocess",)),
    Case("generate-process-file-missing", lambda s: ["generate", "--process", s.out("none.yaml"), "--events", "5",
                                                     "--out", s.out("gen"), "-q"], NOT_FOUND),
]


@pytest.fixture
def world_root(tmp_path_factory, capfd):
    return world(tmp_path_factory, capfd)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bad_input_is_refused(case, world_root, tmp_path, capfd, monkeypatch):
    check(case, world_root, tmp_path, capfd, monkeypatch)
