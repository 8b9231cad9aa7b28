"""``darkflow prepare`` on Dark Machines CSV files: values, process IDs, channels, errors, shards."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from reference import CUTS, SLOTS, TYPES, channel_pass, remove_overlaps

from darkflow.cli import main
from darkflow.data_prep.prepare import PrepareConfig, prepare
from darkflow.events import merge

CODES = {"j": "jet", "b": "bjet", "e+": "eplus", "e-": "eminus", "m+": "muplus", "m-": "muminus", "g": "photon"}


def random_csv(path, n, seed=0, processes=("ttbar", "wjets", "z_jets")):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        objs = []
        for _ in range(rng.poisson(5)):
            code = rng.choice(list(CODES))
            pt = rng.exponential(60_000) + 5_000
            eta = rng.uniform(-3, 3)
            e = pt * math.cosh(eta) * rng.uniform(1.0, 1.01)
            objs.append(f"{code},{e:.6g},{pt:.6g},{eta:.5f},{rng.uniform(-math.pi, math.pi):.5f}")
        met = rng.exponential(80_000)
        head = f"{1000 + i};{processes[i % len(processes)]};{rng.uniform(0.5, 2):.4f};{met:.6g};{rng.uniform(-3, 3):.5f}"
        lines.append(";".join([head, *objs]) + ";")
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_reference(path):
    """A plain line-by-line reading of the format, independent of the package."""
    events = []
    for line in path.read_text().splitlines():
        fields = [f for f in line.strip().split(";") if f]
        eid, proc, w, met, metphi = fields[:5]
        objs = {t: [] for t in TYPES}
        for field in fields[5:]:
            code, e, pt, eta, phi = field.split(",")
            e, pt, eta, phi = float(e) / 1000, float(pt) / 1000, float(eta), float(phi)
            kind = CODES[code]
            if pt > CUTS[kind][0] and abs(eta) < CUTS[kind][1]:
                objs[kind].append((e, pt, eta, phi))
        remove_overlaps(objs)  # no ID or isolation in the format: only the jet overlap removal applies
        for kind in TYPES:
            objs[kind].sort(key=lambda o: -o[1])
        events.append(dict(id=int(eid), process=proc, weight=float(w), met=float(met) / 1000,
                           met_phi=float(metphi), objs=objs))
    return events


@pytest.mark.parametrize("channel", ["none", "chan2b"])
def test_csv_matches_reference(tmp_path, channel):
    src = random_csv(tmp_path / "mix.csv", 700)
    out = tmp_path / "mix.h5"
    res = prepare(PrepareConfig(inputs=[str(src)], out=str(out), channel=channel, chunk_size=128), progress=False)
    ref = parse_reference(src)
    if channel != "none":
        ref = [e for e in ref if channel_pass(channel, e["objs"], e["met"])]
    assert res.n_read == 700 and res.n_selected == len(ref) > 0
    with h5py.File(out) as h:
        obj, mask, names = h["objects"][:], h["mask"][:], json.loads(h.attrs["process_names"])
        proc, w, ids = h["process"][:], h["weight"][:], h["event_id"][:]
        assert json.loads(h.attrs["source"]) == {"name": "darkmachines"}
        assert bool(h.attrs["simulation"]) is True
        reqs = json.loads(h.attrs["objects_definition"])["requirements"]
    # the format has no ID or isolation (Delphes isolated upstream); the jet overlap removal applies
    assert reqs["photon"] == {"applied": ["pt_min", "abs_eta_max"], "not_provided": ["id", "rel_iso_max"]}
    assert reqs["jet"] == {"applied": ["pt_min", "abs_eta_max", "overlap_removal"], "not_provided": ["id"]}
    assert sorted(names) == ["ttbar", "wjets", "z_jets"]
    for i, ev in enumerate(ref):
        assert ids[i] == ev["id"] and names[proc[i]] == ev["process"] and w[i] == pytest.approx(ev["weight"])
        row = 0
        for kind in TYPES:
            for s in range(SLOTS[kind]):
                if s < len(ev["objs"][kind]):
                    np.testing.assert_allclose(obj[i, row], ev["objs"][kind][s], rtol=1e-6, atol=1e-6)
                    assert mask[i, row]
                else:
                    assert not mask[i, row] and (obj[i, row] == 0).all()
                row += 1
        np.testing.assert_allclose(obj[i, 31], [ev["met"], ev["met"], 0, ev["met_phi"]], rtol=1e-6, atol=1e-6)


def test_csv_shards_merge_to_one_shot(tmp_path):
    src = random_csv(tmp_path / "a.csv", 301)
    whole = tmp_path / "whole.h5"
    prepare(PrepareConfig(inputs=[str(src)], out=str(whole)), progress=False)
    shards = []
    for i in range(4):
        shards.append(tmp_path / f"s{i}.h5")
        prepare(PrepareConfig(inputs=[str(src)], out=str(shards[-1]), shard=f"{i}/4", chunk_size=50), progress=False)
    merge(shards, tmp_path / "m.h5")
    with h5py.File(whole) as a, h5py.File(tmp_path / "m.h5") as b:
        for name in ("objects", "mask", "hlf", "weight", "event_id"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
        names_a, names_b = json.loads(a.attrs["process_names"]), json.loads(b.attrs["process_names"])
        np.testing.assert_array_equal(np.array(names_a)[a["process"][:]], np.array(names_b)[b["process"][:]])


def _run(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def test_malformed_line_reports_line_number(tmp_path, capsys):
    src = random_csv(tmp_path / "bad.csv", 50)
    lines = src.read_text().splitlines()
    lines[36] = "1036;ttbar;1.0;5000;0.1;j,100,200,0.1;"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "bad.h5"
    code, err = _run(capsys, "prepare", str(src), "--out", str(out), "--chunk-size", "10", "-q")
    assert code == 2 and len(err.splitlines()) == 1 and ":37:" in err, err
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    code, err = _run(capsys, "prepare", str(src), "--out", str(out), "--on-error", "skip", "-q")
    assert code == 0
    with h5py.File(out) as h:
        assert len(h["objects"]) == 49 and int(h.attrs["n_skipped"]) == 1 and 1036 not in h["event_id"][:]


def test_unknown_object_code(tmp_path, capsys):
    src = random_csv(tmp_path / "tau.csv", 20)
    lines = src.read_text().splitlines()
    lines[4] = lines[4].rstrip(";") + ";t,50000,40000,0.1,0.2;"
    src.write_text("\n".join(lines) + "\n")
    code, err = _run(capsys, "prepare", str(src), "--out", str(tmp_path / "x.h5"), "-q")
    assert code == 2 and ":5:" in err and "'t'" in err and "j, b, e+, e-, m+, m-, g" in err, err
    assert not (tmp_path / "x.h5").exists()


def test_nan_in_csv(tmp_path, capsys):
    src = random_csv(tmp_path / "nan.csv", 20)
    lines = src.read_text().splitlines()
    parts = lines[7].split(";")
    parts[3] = "nan"
    lines[7] = ";".join(parts)
    src.write_text("\n".join(lines) + "\n")
    code, err = _run(capsys, "prepare", str(src), "--out", str(tmp_path / "x.h5"), "-q")
    assert code == 2 and "NaN or inf" in err and "1007" in err, err


def test_every_line_skipped_is_an_error(tmp_path, capsys):
    src = tmp_path / "broken.csv"
    src.write_text("1;broken line\n2;also;broken\n")
    out = tmp_path / "b.h5"
    assert main(["prepare", str(src), "--out", str(out), "--on-error", "skip", "-q"]) == 2
    err = capsys.readouterr().err
    assert "no event is left (2 skipped as malformed or NaN/inf)" in err and not out.exists()
