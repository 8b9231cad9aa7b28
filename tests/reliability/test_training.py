"""Training options that cannot be right, training files that cannot be trained on, and damaged run files.

``train`` and ``cflow train``: zero or negative epochs, batch size, devices and nodes, non-finite or
non-positive learning rates, a learning rate that makes the validation loss NaN, non-finite weights, NaN objects
(an input problem, not "lower the learning rate"), failed resumes (the run stays byte-identical). Run files read
by ``score``, ``flag``, ``report``, ``export`` and ``cflow score``: metadata that is not JSON, empty, incomplete
or describes other weights, truncated or pickled files, a folder or FIFO in place of the weights.
"""

from __future__ import annotations

import pytest
from harness import TINY_CFLOW, TINY_VAE, Case, check, damage_weights, damaged_events, ids, world


def train(*extra: str, data=None, out: str = "run"):
    """``darkflow train`` of the tiny model on ``data(scene)`` (default ``sm.h5``) with ``extra`` options."""
    return lambda s: ["train", "--data", data(s) if data else s.sm_h5, "--out", s.out(out), "-q", *TINY_VAE,
                      "--epochs", "1", *extra]


def cflow_train(*extra: str):
    return lambda s: ["cflow", "train", "--data", s.tex, "--out", s.out("crun"), "-q", *TINY_CFLOW,
                      "--epochs", "1", *extra]


TRAIN_OPTIONS = [
    Case("train-epochs-0", train("--epochs", "0"), ("epochs",)),
    # a build that accepts -1 trains until early stopping: in a subprocess, with a timeout
    Case("train-epochs-negative", train("--epochs", "-1"), ("epochs",), subprocess=True),
    Case("train-batch-size-0", train("--batch-size", "0"), ("batch",)),
    Case("train-batch-size-negative", train("--batch-size", "-8"), ("batch",)),
    Case("train-devices-0", train("--devices", "0"), ("devices",)),
    Case("train-num-nodes-0", train("--num-nodes", "0"), ("nodes",)),
    Case("train-lr-nan", train("--set", "training.learning_rate=.nan"), ("learning_rate|learning rate|lr",)),
    Case("train-lr-inf", train("--set", "training.learning_rate=.inf"), ("learning_rate|learning rate|lr",)),
    Case("train-lr-zero", train("--set", "training.learning_rate=0"), ("learning_rate|learning rate|lr",)),
    Case("train-lr-negative", train("--set", "training.learning_rate=-0.001"), ("learning_rate|learning rate|lr",)),
    # one batch per epoch: the step after the first loss blows the weights up, the validation loss is NaN
    Case("train-lr-makes-validation-nan", train("--epochs", "3", "--batch-size", "512", "--set",
                                                "training.learning_rate=1e30", "--set", "training.gradient_clip=0"),
         ("validation",), allow=("out/run.partial",)),
    Case("train-val-fraction-1.5", train("--set", "training.val_fraction=1.5"), ("val_fraction",)),
    Case("train-val-fraction-0", train("--set", "training.val_fraction=0"), ("val_fraction",)),
    Case("train-unknown-flow", train("--set", "model.flow=bogusflow"), ("bogusflow",)),
    Case("train-unknown-encoder", train("--encoder", "transformer"), ("transformer",)),
    Case("train-unknown-model", lambda s: ["train", "--data", s.sm_h5, "--model", "nosuchmodel", "--out",
                                           s.out("run"), "-q"], ("nosuchmodel",)),
    Case("train-unknown-set-key", train("--set", "training.colour=red"), ("colour",)),
    Case("train-set-wrong-type", train("--set", "model.latent=lots"), ("latent",)),
    Case("train-set-malformed", train("--set", "novalue"), ("novalue",)),
    Case("train-threads-0", train("--threads", "0"), ("threads",)),
    Case("train-seed-text", train("--seed", "abc"), ("seed",)),
    Case("train-weight-inf", train(data=damaged_events("weight-inf")), ("weight",), ("learning rate",)),
    Case("train-weight-nan", train(data=damaged_events("weight-nan")), ("weight",), ("learning rate",)),
    Case("train-objects-nan", train(data=damaged_events("objects-nan")), ("nan",), ("learning rate",)),
    Case("train-hlf-inf", train(data=damaged_events("hlf-inf")), ("inf",), ("learning rate",)),
    Case("train-resume-without-run", train("--resume"), ("resume|checkpoint",)),
    Case("train-resume-bad-data", lambda s: ["train", "--data", s.write("text.h5", "not HDF5\n"), "--out", s.run,
                                             "--resume", "-q", *TINY_VAE, "--epochs", "2"], ("hdf5",)),
    Case("train-resume-epochs-0", lambda s: ["train", "--data", s.sm_h5, "--out", s.run, "--resume", "-q",
                                             *TINY_VAE, "--epochs", "0"], ("epochs",)),
    Case("train-resume-other-model", lambda s: ["train", "--data", s.sm_h5, "--out", s.run, "--resume", "-q",
                                                *TINY_VAE, "--epochs", "2", "--set", "model.latent=5"],
         ("latent|model|checkpoint",)),
    Case("cflow-train-epochs-0", cflow_train("--epochs", "0"), ("epochs",)),
    Case("cflow-train-epochs-negative", cflow_train("--epochs", "-1"), ("epochs",)),
    Case("cflow-train-image-size-0", cflow_train("--image-size", "0"), ("image_size|image-size",)),
    Case("cflow-train-fiber-batch-0", cflow_train("--set", "training.fiber_batch=0"), ("fiber_batch",)),
    Case("cflow-train-blocks-0", cflow_train("--set", "decoder.blocks=0"), ("blocks",)),
    Case("cflow-train-unknown-flow", cflow_train("--flow", "bogusflow"), ("bogusflow",)),
    Case("cflow-train-unknown-config", lambda s: ["cflow", "train", "--data", s.tex, "--config", "nosuchcflow",
                                                  "--out", s.out("crun"), "-q"], ("nosuchcflow",)),
]


def _damaged_run(kind: str, name: str = "model.pt", attr: str = "run"):
    def make(s):
        return s.run_copy(f"{attr}-{kind}", lambda run: damage_weights(run, name, kind), source=getattr(s, attr))
    return make


RUN_KINDS = {
    "meta-not-json": ("model.pt|metadata",),
    "blob-empty": ("model.pt",),
    "meta-empty": ("model.pt|metadata",),
    "meta-without-config": ("model.pt|config",),
    "weights-mismatch": ("model.pt|match",),
    "weights-missing": ("model.pt|missing|match",),
    "truncated": ("truncated|damaged|incomplete",),
    "pickled": ("pickle",),
    "folder": ("folder|directory",),
    "missing": ("model.pt",),
}
"""Damage of a run's ``model.pt`` and what the message says."""
RUN_FORBID = {"truncated": ("pickle",), "folder": ("not found", "no trained model at")}

RUN_FILES = [
    Case(f"score-run-{kind}", lambda s, k=kind: ["score", "--run", _damaged_run(k)(s), "--data", s.smtest_h5,
                                                 "--out", s.out("s.h5")], expect, RUN_FORBID.get(kind, ()))
    for kind, expect in RUN_KINDS.items()
]
RUN_FILES += [
    Case(f"export-run-{kind}", lambda s, k=kind: ["export", "--run", _damaged_run(k)(s), "--out", s.out("m.onnx")],
         RUN_KINDS[kind], RUN_FORBID.get(kind, ()))
    for kind in ("meta-not-json", "weights-mismatch", "truncated", "pickled", "folder")
]
RUN_FILES += [
    Case(f"flag-run-{kind}", lambda s, k=kind: ["flag", "--run", _damaged_run(k)(s), "--data", s.sig_h5,
                                                "--calibration", s.smcal_h5, "--eps-b", "0.1",
                                                "--out", s.out("c.csv")], RUN_KINDS[kind], RUN_FORBID.get(kind, ()))
    for kind in ("meta-empty", "weights-mismatch", "truncated")
]
CFLOW_KINDS = {"meta-not-json": ("cflow.pt|metadata",), "weights-mismatch": ("cflow.pt|match",),
               "truncated": ("truncated|damaged|incomplete",), "pickled": ("pickle",), "folder": ("folder|directory",),
               "missing": ("cflow.pt",)}
RUN_FILES += [
    Case(f"cflow-score-run-{kind}", lambda s, k=kind: ["cflow", "score", "--run", _damaged_run(k, "cflow.pt", "crun")(s),
                                                       "--data", s.tex, "--out", s.out("cs"), "--overlays", "1"],
         expect, RUN_FORBID.get(kind, ()))
    for kind, expect in CFLOW_KINDS.items()
]
RUN_FILES += [
    Case("score-run-folder-missing", lambda s: ["score", "--run", s.out("norun"), "--data", s.smtest_h5, "--out", s.out("s.h5")],
         ("not found|no trained model",)),
    Case("score-run-is-event-file", lambda s: ["score", "--run", s.sm_h5, "--data", s.smtest_h5, "--out", s.out("s.h5")],
         ("sm.h5",), ("pickle",)),
    Case("score-run-model-fifo", lambda s: ["score", "--run", _damaged_run("fifo")(s), "--data", s.smtest_h5,
                                            "--out", s.out("s.h5")], ("fifo|regular file",)),
    Case("report-run-config-not-yaml", lambda s: ["report", "--run", s.run_copy(
        "run-badconfig", lambda run: (run / "config.yaml").write_text("model: [broken\n")), "--scan", s.scan,
        "--scores", s.scores, "--out", s.out("r.md")], ("config.yaml",)),
    Case("report-run-model-truncated", lambda s: ["report", "--run", _damaged_run("truncated")(s), "--scan", s.scan,
                                                  "--scores", s.scores, "--out", s.out("r.md")],
         ("truncated|damaged|incomplete",), ("pickle",)),
    Case("export-run-missing", lambda s: ["export", "--run", s.out("norun"), "--out", s.out("m.onnx")],
         ("not found",)),
    Case("export-run-is-file", lambda s: ["export", "--run", s.sm_h5, "--out", s.out("m.onnx")],
         ("sm.h5",), ("pickle",)),
]

CASES = TRAIN_OPTIONS + RUN_FILES


@pytest.fixture
def world_root(tmp_path_factory, capfd):
    return world(tmp_path_factory, capfd)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bad_training_or_run_is_refused(case, world_root, tmp_path, capfd, monkeypatch):
    check(case, world_root, tmp_path, capfd, monkeypatch)
