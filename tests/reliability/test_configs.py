"""Hostile and broken YAML, for every option that reads a YAML file: one line, nothing run, nothing written.

Each of the twelve YAML slots (``generate --config/--detector/--process``, ``prepare --config/--source/--channel/
--layout/--objects``, ``jetimages --config``, ``train --model``, ``report --config``, ``cflow train --config``)
gets: bytes that are not UTF-8, 50,000 levels of nesting, an alias bomb, a ``!!python`` tag that would make a
folder if it ran, a syntax error, a document that is not a mapping, an unknown key and a value of the wrong type.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from harness import Case, check, ids, world
from harness import alias_bomb_text as alias_bomb

DEPTH = 50_000


BAD_YAML: dict[str, tuple[bytes | str | None, tuple[str, ...]]] = {
    "not-utf8": (b"label: caf\xe9 \xff\xfe\n", ("utf-8",)),
    "nested-50000-deep": ("key: " + "[" * DEPTH + "]" * DEPTH + "\n", ("nest|deep",)),
    # 10**6 values from 60 aliases: over the expansion limit, harmless to a build without limits
    "alias-bomb": (alias_bomb(6), ("alias",)),
    "python-tag": ("label: !!python/object/apply:os.mkdir [pwned]\n", ("python|tag",)),
    "syntax-error": ("label: [1, 2\nother: {a: 1\n", ("valid yaml|syntax",)),
    "not-a-mapping": ("- one\n- two\n", ("mapping",)),
    "unknown-key": ("colour: red\n", ("colour",)),
    "wrong-type": (None, ()),
}
"""Kind of bad YAML: its text (``None``: the slot's own wrong-type text) and the fragments of the message."""


@dataclass(frozen=True)
class Slot:
    """One option that reads YAML: the argument list for a YAML path, and a value of the wrong type."""

    name: str
    argv: object
    wrong_type: str
    key: str


SLOTS = [
    Slot("generate-config", lambda s, y: ["generate", "--config", y, "--out", s.out("gen"), "-q"],
         "process: ttbar\nevents: lots\n", "events"),
    Slot("generate-detector", lambda s, y: ["generate", "--process", "ttbar", "--events", "5", "--detector", y,
                                            "--out", s.out("gen"), "-q"], "jets: {radius: lots}\n", "radius"),
    Slot("generate-process", lambda s, y: ["generate", "--process", y, "--events", "5", "--out", s.out("gen"), "-q"],
         "description: x\nkind: sm\nsettings: {Top: on}\n", "settings"),
    Slot("prepare-config", lambda s, y: ["prepare", s.sm_root, "--config", y, "--out", s.out("x.h5"), "-q"],
         "chunk_size: lots\n", "chunk_size"),
    Slot("prepare-source", lambda s, y: ["prepare", s.sm_root, "--source", y, "--out", s.out("x.h5"), "-q"],
         "tree: Events\ncollections: 5\nmet: {kinematics: ptphi, pt: MET_pt, phi: MET_phi}\n", "collections"),
    Slot("prepare-channel", lambda s, y: ["prepare", s.sm_root, "--channel", y, "--out", s.out("x.h5"), "-q"],
         "met_min: lots\n", "met_min"),
    Slot("prepare-layout", lambda s, y: ["prepare", s.sm_root, "--layout", y, "--out", s.out("x.h5"), "-q"],
         "features: [E, pt, eta, phi]\nblocks: {types: jet}\n", "blocks"),
    Slot("prepare-objects", lambda s, y: ["prepare", s.sm_root, "--objects", y, "--out", s.out("x.h5"), "-q"],
         "jet: {pt_min: lots}\n", "pt_min"),
    Slot("jetimages-config", lambda s, y: ["jetimages", s.sm_h5, "--config", y, "--out", s.out("j.h5"), "-q"],
         "size: lots\n", "size"),
    Slot("train-model", lambda s, y: ["train", "--data", s.sm_h5, "--model", y, "--out", s.out("run"),
                                      "--epochs", "1", "-q"], "model: {kind: vae, latent: lots}\n", "latent"),
    Slot("report-config", lambda s, y: ["report", "--run", s.run, "--scan", s.scan, "--scores", s.scores,
                                        "--config", y, "--out", s.out("r.md")], "dpi: lots\n", "dpi"),
    Slot("cflow-train-config", lambda s, y: ["cflow", "train", "--data", s.tex, "--config", y, "--out",
                                             s.out("crun"), "-q"], "training: {epochs: lots}\n", "epochs"),
]


def _case(slot: Slot, kind: str) -> Case:
    text, expect = BAD_YAML[kind]
    if text is None:
        text, expect = slot.wrong_type, (slot.key,)
    return Case(f"{slot.name}-{kind}", lambda s: slot.argv(s, s.write("bad.yaml", text)), expect)


CASES = [_case(slot, kind) for slot in SLOTS for kind in BAD_YAML]
CASES += [
    # the 300-byte billion laughs of the issue (10**9 values), where it would hurt most: in a subprocess with a
    # memory limit, so that a build without YAML limits fails this case instead of the machine
    Case("prepare-config-billion-laughs", lambda s: ["prepare", s.sm_root, "--config", s.write("bomb.yaml",
         alias_bomb(9)), "--out", s.out("x.h5"), "-q"], ("alias",), subprocess=True),
    Case("prepare-config-missing", lambda s: ["prepare", s.sm_root, "--config", "missing.yaml", "--out",
                                              s.out("x.h5"), "-q"], ("not found",)),
    Case("prepare-config-is-folder", lambda s: ["prepare", s.sm_root, "--config", s.folder("conf.yaml"), "--out",
                                                s.out("x.h5"), "-q"], ("folder|directory",), ("not found",)),
    Case("prepare-source-is-fifo", lambda s: ["prepare", s.sm_root, "--source", s.fifo("source.yaml"), "--out",
                                              s.out("x.h5"), "-q"], ("fifo|regular file",), ("not found",)),
    Case("train-model-is-dev-zero", lambda s: ["train", "--data", s.sm_h5, "--model", "/dev/zero", "--out",
                                               s.out("run"), "-q"], ("regular file|device",), ("not found",),
         subprocess=True),
    Case("report-config-empty-mapping-key", lambda s: ["report", "--run", s.run, "--scan", s.scan, "--scores",
                                                       s.scores, "--config", s.write("p.yaml", "? [a, b]\n: 1\n"),
                                                       "--out", s.out("r.md")], ("p.yaml",)),
    Case("train-model-too-large", lambda s: ["train", "--data", s.sm_h5, "--model", s.write(
        "big.yaml", "# " + "x" * (2 << 20) + "\n"), "--out", s.out("run"), "-q"], ("mib|large",)),
]


@pytest.fixture
def world_root(tmp_path_factory, capfd):
    return world(tmp_path_factory, capfd)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bad_yaml_is_refused(case, world_root, tmp_path, capfd, monkeypatch):
    check(case, world_root, tmp_path, capfd, monkeypatch)
