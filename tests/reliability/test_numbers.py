"""Numeric options out of range or not numbers: refused with the valid range, before any work.

Background efficiencies of 0, 1, -1, NaN or text; NaN and infinite thresholds; image sizes and radii of 0;
zero or negative event counts, workers and chunk sizes; shards outside ``0 <= I < N``.
"""

from __future__ import annotations

import pytest
from harness import Case, check, ids, world


def scan(*extra: str):
    return lambda s: ["scan", "--scores", s.scores, "--background", "smtest", "--calibration", "smcal",
                      "--out", s.out("scan"), *extra]


def flag(*extra: str):
    return lambda s: ["flag", "--scores", s.scores, "--label", "sig", "--calibration", "smcal",
                      "--out", s.out("c.csv"), *extra]


def jetimages(*extra: str):
    return lambda s: ["jetimages", s.sm_h5, "--out", s.out("j.h5"), "-q", *extra]


def generate(*extra: str):
    return lambda s: ["generate", "--process", "ttbar", "--out", s.out("gen"), "-q", *extra]


def prepare(*extra: str):
    return lambda s: ["prepare", s.sm_root, "--out", s.out("x.h5"), "-q", *extra]


EPS = ("eps_b|eps-b",)

CASES = [
    Case("scan-eps-b-0", scan("--eps-b", "0"), EPS),
    Case("scan-eps-b-1", scan("--eps-b", "1"), EPS),
    Case("scan-eps-b-negative", scan("--eps-b", "-1"), EPS),
    Case("scan-eps-b-nan", scan("--eps-b", "nan"), EPS),
    Case("scan-eps-b-text", scan("--eps-b", "often"), EPS),
    Case("scan-eps-b-one-bad-of-two", scan("--eps-b", "0.1,abc"), EPS),
    Case("scan-eps-b-empty", scan("--eps-b", ""), EPS),
    Case("scan-lumi-negative", scan("--eps-b", "0.1", "--lumi", "-1"), ("lumi",)),
    Case("scan-lumi-nan", scan("--eps-b", "0.1", "--lumi", "nan"), ("lumi",)),
    Case("flag-eps-b-0", flag("--eps-b", "0"), EPS),
    Case("flag-eps-b-1", flag("--eps-b", "1"), EPS),
    Case("flag-eps-b-negative", flag("--eps-b", "-1"), EPS),
    Case("flag-eps-b-nan", flag("--eps-b", "nan"), EPS),
    Case("flag-eps-b-text", flag("--eps-b", "often"), EPS),
    Case("flag-threshold-nan", flag("--threshold", "nan"), ("threshold",)),
    Case("flag-threshold-inf", flag("--threshold", "inf"), ("threshold",)),
    Case("flag-threshold-text", flag("--threshold", "high"), ("threshold",)),
    Case("jetimages-size-0", jetimages("--size", "0"), ("size",)),
    Case("jetimages-size-negative", jetimages("--size", "-16"), ("size",)),
    Case("jetimages-radius-0", jetimages("--radius", "0"), ("radius",)),
    Case("jetimages-radius-nan", jetimages("--radius", "nan"), ("radius",)),
    Case("jetimages-max-events-negative", jetimages("--max-events", "-1"), ("max_events|max-events",)),
    Case("jetimages-jet-pt-min-nan", jetimages("--jet-pt-min", "nan"), ("jet_pt_min|jet-pt-min",)),
    Case("generate-events-0", generate("--events", "0"), ("events",)),
    Case("generate-events-negative", generate("--events", "-1"), ("events",)),
    Case("generate-events-text", generate("--events", "many"), ("events",)),
    Case("generate-workers-0", generate("--events", "5", "--workers", "0"), ("workers",)),
    Case("generate-workers-negative", generate("--events", "5", "--workers", "-2"), ("workers",)),
    Case("generate-seed-negative", generate("--events", "5", "--seed", "-5"), ("seed",)),
    Case("prepare-workers-0", prepare("--workers", "0"), ("workers",)),
    Case("prepare-shard-3-of-2", prepare("--shard", "3/2"), ("shard",)),
    Case("prepare-shard-negative", prepare("--shard", "-1/2"), ("shard",)),
    Case("prepare-shard-of-0", prepare("--shard", "0/0"), ("shard",)),
    Case("prepare-chunk-size-0", prepare("--chunk-size", "0"), ("chunk_size|chunk-size",)),
    Case("prepare-chunk-size-negative", prepare("--chunk-size", "-100"), ("chunk_size|chunk-size",)),
    Case("prepare-max-events-0", prepare("--max-events", "0"), ("max_events|max-events",)),
    Case("prepare-max-events-negative", prepare("--max-events", "-1"), ("max_events|max-events",)),
    Case("demo-workers-0", lambda s: ["demo", "--quick", "--workers", "0", "--out", s.out("demo")], ("workers",),
         subprocess=True),
    Case("cflow-score-overlays-negative", lambda s: ["cflow", "score", "--run", s.crun, "--data", s.tex, "--out",
                                                     s.out("cs"), "--overlays", "-1"], ("overlays",)),
    Case("score-threads-0", lambda s: ["score", "--run", s.run, "--data", s.smtest_h5, "--out", s.out("s.h5"),
                                       "--threads", "0"], ("threads",)),
]


@pytest.fixture
def world_root(tmp_path_factory, capfd):
    return world(tmp_path_factory, capfd)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_bad_number_is_refused(case, world_root, tmp_path, capfd, monkeypatch):
    check(case, world_root, tmp_path, capfd, monkeypatch)
