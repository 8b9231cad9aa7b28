"""Unusable output paths, for every command that writes: refused before any work, nothing left behind.

An existing folder where a file goes, a file where a folder goes, ``/proc/...``, ``/sys/...``, a symlink loop, a
missing parent folder, and ``--out`` naming an input (directly, through a symlink, or as ``./NAME``).
"""

from __future__ import annotations

import pytest
from harness import TINY_CFLOW, TINY_VAE, Case, check, ids, world

FILE_OUTPUTS = {
    "prepare": lambda s, out: ["prepare", s.sm_root, "--out", out, "-q"],
    "merge": lambda s, out: ["merge", s.sm_h5, s.smcal_h5, "--out", out],
    "jetimages": lambda s, out: ["jetimages", s.sm_h5, "--out", out, "--size", "16", "-q"],
    "score": lambda s, out: ["score", "--run", s.run, "--data", s.smtest_h5, "--out", out],
    "flag": lambda s, out: ["flag", "--scores", s.scores, "--label", "sig", "--calibration", "smcal",
                            "--eps-b", "0.1", "--out", out],
    "report": lambda s, out: ["report", "--run", s.run, "--scan", s.scan, "--scores", s.scores, "--out", out],
    "export": lambda s, out: ["export", "--run", s.run, "--out", out],
}
"""Commands whose output is one file: argument list for an output path."""
SUFFIX = {"prepare": ".h5", "merge": ".h5", "jetimages": ".h5", "score": ".h5", "flag": ".csv", "report": ".md",
          "export": ".onnx"}
"""The suffix each file output must have (so that only the path's kind is wrong)."""

FOLDER_OUTPUTS = {
    "generate": lambda s, out: ["generate", "--process", "ttbar", "--events", "5", "--out", out, "-q"],
    "train": lambda s, out: ["train", "--data", s.sm_h5, "--out", out, "--epochs", "1", "-q", *TINY_VAE],
    "scan": lambda s, out: ["scan", "--scores", s.scores, "--background", "smtest", "--calibration", "smcal",
                            "--eps-b", "0.1", "--out", out],
    "cflow-train": lambda s, out: ["cflow", "train", "--data", s.tex, "--out", out, "--epochs", "1", "-q",
                                   *TINY_CFLOW],
    "cflow-score": lambda s, out: ["cflow", "score", "--run", s.crun, "--data", s.tex, "--out", out,
                                   "--overlays", "1"],
    "demo": lambda s, out: ["demo", "--quick", "--out", out],
}
"""Commands whose output is a folder (demo runs as a subprocess: a demo that does not stop runs for minutes)."""


def _case(verb: str, kind: str, build, out, expect: tuple[str, ...], forbid: tuple[str, ...] = ()) -> Case:
    return Case(f"{verb}-{kind}", lambda s: build(s, out(s)), expect, forbid, subprocess=verb == "demo")


def _cases() -> list[Case]:
    cases = []
    for verb, build in FILE_OUTPUTS.items():
        ext = SUFFIX[verb]
        cases += [
            _case(verb, "out-is-folder", build, lambda s, e=ext: s.folder(f"out/taken{e}"),
                  ("is a folder|is a directory",)),
            _case(verb, "out-in-proc", build, lambda s, e=ext: f"/proc/darkflow-corpus{e}", ("/proc",)),
            _case(verb, "out-symlink-loop", build, lambda s, e=ext: s.loop(f"out/loop{e}"), ("symlink loop",)),
            _case(verb, "out-parent-missing", build, lambda s, e=ext: s.out(f"nowhere/x{e}"), ("does not exist",)),
        ]
    for verb, build in FOLDER_OUTPUTS.items():
        cases += [
            _case(verb, "out-is-file", build, lambda s: s.write("out/taken", "taken\n"), ("not a folder",)),
            _case(verb, "out-in-proc", build, lambda s: "/proc/darkflow-corpus", ("/proc",)),
            _case(verb, "out-symlink-loop", build, lambda s: s.loop("out/loop"), ("symlink loop",)),
            _case(verb, "out-parent-missing", build, lambda s: s.out("nowhere/x"), ("does not exist",)),
        ]
    for verb, build, ext in [("prepare", FILE_OUTPUTS["prepare"], ".h5"), ("score", FILE_OUTPUTS["score"], ".h5"),
                             ("train", FOLDER_OUTPUTS["train"], ""), ("scan", FOLDER_OUTPUTS["scan"], "")]:
        cases.append(_case(verb, "out-in-sys", build, lambda s, e=ext: f"/sys/darkflow-corpus{e}", ("/sys",)))
    return cases


SAME = ("also an input|is an input|is the input|of the inputs|same as",)
"""What a refusal of ``--out`` naming an input says."""

OUT_IS_INPUT = [
    Case("prepare-out-is-input", lambda s: ["prepare", s.sm_root, "--out", s.sm_root, "-q"], SAME),
    Case("prepare-out-is-input-via-symlink",
         lambda s: ["prepare", s.sm_root, "--out", s.link("out/alias.root", s.sm_root), "-q"], SAME),
    Case("prepare-out-is-input-via-dot", lambda s: ["prepare", "sm.root", "--out", "./sm.root", "-q"], SAME),
    Case("merge-out-is-input", lambda s: ["merge", s.sm_h5, s.smcal_h5, "--out", s.smcal_h5], SAME),
    Case("merge-out-is-input-via-dot", lambda s: ["merge", "sm.h5", "smcal.h5", "--out", "./sm.h5"], SAME),
    Case("jetimages-out-is-input", lambda s: ["jetimages", s.sm_h5, "--out", s.sm_h5, "-q"], SAME),
    Case("jetimages-out-is-input-via-symlink",
         lambda s: ["jetimages", s.sm_h5, "--out", s.link("out/alias.h5", s.sm_h5), "-q"], SAME),
    Case("score-out-is-data", lambda s: ["score", "--run", s.run, "--data", s.smtest_h5, "--out", s.smtest_h5], SAME),
    Case("score-out-is-second-data",
         lambda s: ["score", "--run", s.run, "--data", s.smtest_h5, s.sig_h5, "--out", s.sig_h5], SAME),
    Case("score-out-is-data-via-symlink", lambda s: ["score", "--run", s.run, "--data", s.smtest_h5, "--out",
                                                     s.link("out/alias.h5", s.smtest_h5)], SAME),
    Case("score-out-is-data-via-dot", lambda s: ["score", "--run", "run", "--data", "smtest.h5", "--out",
                                                 "./smtest.h5"], SAME),
    Case("score-out-is-model", lambda s: ["score", "--run", s.run, "--data", s.smtest_h5, "--out",
                                          f"{s.run}/model.pt"],
         ("input|run",)),
    Case("flag-out-is-scores", lambda s: ["flag", "--scores", s.scores, "--label", "sig", "--calibration", "smcal",
                                          "--eps-b", "0.1", "--out", s.scores], SAME),
    Case("export-out-is-model", lambda s: ["export", "--run", s.run, "--out", f"{s.run}/model.pt"], ("input|run",)),
    Case("cflow-score-out-is-data", lambda s: ["cflow", "score", "--run", s.crun, "--data", s.tex, "--out", s.tex,
                                               "--overlays", "1"], SAME),
    Case("cflow-score-out-is-run", lambda s: ["cflow", "score", "--run", s.crun, "--data", s.tex, "--out", s.crun,
                                              "--overlays", "1"], SAME),
    Case("train-out-is-finished-run", lambda s: ["train", "--data", s.sm_h5, "--out", s.run, "--epochs", "1", "-q",
                                                 *TINY_VAE], ("already",)),
    Case("train-out-is-data", lambda s: ["train", "--data", s.sm_h5, "--out", s.sm_h5, "--epochs", "1", "-q",
                                         *TINY_VAE], ("not a folder|" + SAME[0],)),
    Case("scan-out-is-scores", lambda s: ["scan", "--scores", s.scores, "--background", "smtest", "--calibration",
                                          "smcal", "--eps-b", "0.1", "--out", s.scores],
         ("not a folder|" + SAME[0],)),
]

CASES = _cases() + OUT_IS_INPUT


@pytest.fixture
def world_root(tmp_path_factory, capfd):
    return world(tmp_path_factory, capfd)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_unusable_output_is_refused(case, world_root, tmp_path, capfd, monkeypatch):
    check(case, world_root, tmp_path, capfd, monkeypatch)
