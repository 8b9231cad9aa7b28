"""Object definitions: ID, isolation and overlap removal against brute force; config and schema validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkflow.data_prep.jagged import Jagged
from darkflow.data_prep.objects import ObjectDefinitions, load_objects, near_any, select_objects
from darkflow.data_prep.schema import Identification, load_schema
from darkflow.errors import ConfigError


def random_jagged(rng, n, mean, extra=()):
    counts = rng.poisson(mean, n).astype(np.int64)
    m = int(counts.sum())
    fields = {"pt": rng.exponential(40, m) + 5, "eta": rng.uniform(-2.5, 2.5, m), "phi": rng.uniform(-np.pi, np.pi, m)}
    fields["E"] = fields["pt"] * np.cosh(fields["eta"])
    if "id" in extra:
        fields["id"] = rng.random(m) < 0.8
    if "iso" in extra:
        fields["iso"] = rng.uniform(0, 0.3, m)
    return Jagged(counts, fields)


def per_event(coll):
    starts = np.concatenate([[0], np.cumsum(coll.counts)])
    return [{k: v[starts[i]:starts[i + 1]] for k, v in coll.fields.items()} for i in range(len(coll))]


def test_near_any_against_brute_force():
    rng = np.random.default_rng(0)
    jets, leptons = random_jagged(rng, 500, 4), random_jagged(rng, 500, 1.5)
    # some leptons just across phi = +-pi from a jet
    leptons.fields["phi"][::7] = np.pi - 0.05
    jets.fields["phi"][::5] = -np.pi + 0.05
    got = near_any(jets, leptons, 0.4)
    expected = []
    for j, lep in zip(per_event(jets), per_event(leptons), strict=True):
        for eta, phi in zip(j["eta"], j["phi"], strict=True):
            expected.append(any(
                math.hypot(eta - le, (phi - lp + math.pi) % (2 * math.pi) - math.pi) < 0.4
                for le, lp in zip(lep["eta"], lep["phi"], strict=True)))
    np.testing.assert_array_equal(got, expected)
    assert 0 < got.sum() < len(got)
    assert not near_any(jets, Jagged.empty(500), 0.4).any()


def test_select_objects_against_brute_force():
    rng = np.random.default_rng(1)
    n = 300
    objects = {"jet": random_jagged(rng, n, 5, ("id",)), "bjet": random_jagged(rng, n, 1, ("id",)),
               "eplus": random_jagged(rng, n, 1, ("id", "iso")), "eminus": random_jagged(rng, n, 1, ("id", "iso")),
               "muplus": random_jagged(rng, n, 1, ("iso",)),  # a source with isolation but no muon ID
               "muminus": random_jagged(rng, n, 1, ("iso",)), "photon": random_jagged(rng, n, 1)}
    defs = ObjectDefinitions()
    out = select_objects(objects, defs)
    cuts = {t: getattr(defs, t) for t in objects}
    for i in range(n):
        kept = {}
        for t, coll in objects.items():
            ev = per_event(coll)[i]
            rows = []
            for k in range(len(ev["pt"])):
                c = cuts[t]
                if not (ev["pt"][k] > c.pt_min and abs(ev["eta"][k]) < c.abs_eta_max):
                    continue
                if "id" in ev and not ev["id"][k]:
                    continue
                if "iso" in ev and not ev["iso"][k] < 0.15:
                    continue
                rows.append((ev["pt"][k], ev["eta"][k], ev["phi"][k]))
            kept[t] = rows
        near = [o for t in ("eplus", "eminus", "muplus", "muminus", "photon") for o in kept[t]]
        for t in ("jet", "bjet"):
            kept[t] = [j for j in kept[t] if all(
                math.hypot(j[1] - o[1], (j[2] - o[2] + math.pi) % (2 * math.pi) - math.pi) >= 0.4 for o in near)]
        for t in objects:
            got = per_event(out[t])[i]
            assert set(got) == {"E", "pt", "eta", "phi"}
            np.testing.assert_allclose(got["pt"], sorted((r[0] for r in kept[t]), reverse=True))


def test_rules_apply_in_order_against_what_is_left():
    """A photon removed near an electron no longer removes the jet next to it."""

    def one(eta, phi):
        return Jagged(np.array([1]), {"E": np.array([50.0]), "pt": np.array([50.0]), "eta": np.array([eta]),
                                      "phi": np.array([phi])})

    objects = {t: Jagged.empty(1) for t in ("bjet", "eplus", "muplus", "muminus")}
    objects |= {"jet": one(0.0, 0.0), "eminus": one(0.0, 0.6), "photon": one(0.0, 0.3)}
    rules = [{"remove": ["photon"], "near": ["eminus"], "delta_r": 0.4},
             {"remove": ["jet"], "near": ["photon", "eminus"], "delta_r": 0.4}]
    out = select_objects(objects, ObjectDefinitions(overlap_removal=rules))
    assert out["photon"].counts.tolist() == [0] and out["jet"].counts.tolist() == [1]
    out = select_objects(objects, ObjectDefinitions(overlap_removal=rules[::-1]))
    assert out["photon"].counts.tolist() == [0] and out["jet"].counts.tolist() == [0]


def test_yaml_keys_left_out_keep_the_defaults(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("jet: {pt_min: 30}\nphoton: {rel_iso_max: null}\n")
    defs = load_objects(path)
    assert (defs.jet.pt_min, defs.jet.abs_eta_max, defs.jet.id) == (30.0, 2.8, True)
    assert defs.photon.rel_iso_max is None and defs.photon.id and defs.eplus.rel_iso_max == 0.15
    assert defs.overlap_removal[0].delta_r == 0.4


@pytest.mark.parametrize("text, message", [
    ("jet: {pt_min: 20, isolation: 0.1}", "unknown key 'isolation'; valid keys: abs_eta_max, id, pt_min, rel_iso_max"),
    ("overlap: []", "unknown key 'overlap'; valid keys: bjet, eminus, eplus, jet, muminus, muplus, overlap_removal"),
    ("overlap_removal: [{remove: [jet], near: [eplus], dr: 0.4}]",
     "overlap_removal[0]: unknown key 'dr'; valid keys: delta_r, near, remove"),
    ("overlap_removal: [{remove: [jet], near: [eplus], delta_r: wide}]", "delta_r"),
    ("overlap_removal: [{remove: [jet], near: [eplus], delta_r: -0.4}]", "greater than 0"),
    ("overlap_removal: [{remove: [tau], near: [eplus], delta_r: 0.4}]", "unknown object type 'tau'; valid: jet, bjet"),
    ("overlap_removal: [{remove: jet, near: [eplus], delta_r: 0.4}]", "remove"),
    ("overlap_removal: [{remove: [jet, photon], near: [photon], delta_r: 0.4}]", "photon in both 'remove' and 'near'"),
    ("overlap_removal: [{remove: [], near: [photon], delta_r: 0.4}]", "at least one object type"),
    ("eplus: {rel_iso_max: 0}", "greater than 0"),
    ("muplus: {id: maybe}", "id"),
])
def test_bad_object_definitions(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_objects(path)
    assert message in str(err.value)


def test_bad_object_definitions_through_the_cli(tmp_path, capsys, real_nanoaod):
    from darkflow.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("overlap_removal: [{remove: [jet], near: [eplus], delta_r: [0.4]}]\n")
    out = tmp_path / "x.h5"
    assert main(["prepare", str(real_nanoaod), "--out", str(out), "--objects", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "overlap_removal" in err and "delta_r" in err
    assert not out.exists()


def test_identification_rules():
    bits = Identification(branch="Jet_jetId", bits=2)
    np.testing.assert_array_equal(bits.passes(np.array([0, 1, 2, 3, 4, 6, 7])), [0, 0, 1, 1, 0, 1, 1])
    least = Identification(branch="Electron_cutBased", min=3)
    np.testing.assert_array_equal(least.passes(np.array([0, 2, 3, 4])), [0, 0, 1, 1])
    flag = Identification(branch="Muon_mediumId", min=1)
    np.testing.assert_array_equal(flag.passes(np.array([True, False])), [1, 0])


@pytest.mark.parametrize("ident, message", [
    ("{branch: Jet_jetId}", "exactly one of 'min' or 'bits'"),
    ("{branch: Jet_jetId, min: 1, bits: 2}", "exactly one of 'min' or 'bits'"),
    ("{branch: Jet_jetId, bits: 0}", "positive mask"),
    ("{branch: Jet_jetId, mask: 2}", "unknown key 'mask'"),
])
def test_bad_schema_id(tmp_path, ident, message):
    path = tmp_path / "s.yaml"
    path.write_text(f"collections: {{jet: {{kinematics: ptetaphim, pt: a, eta: b, phi: c, id: {ident}}}}}\n"
                    "met: {kinematics: ptphi, pt: x, phi: y}\n")
    with pytest.raises(ConfigError, match=message):
        load_schema(path)


def test_builtin_schemas_provide_ids_where_the_source_has_them():
    from darkflow.data_prep.builtin import resolve

    both = {"id", "isolation"}
    nano = load_schema(resolve("sources", "nanoaod")).provides()
    assert nano == {"jet": {"id"}, "bjet": {"id"}, "eplus": both, "eminus": both, "muplus": both,
                    "muminus": both, "photon": both}
    assert load_schema(resolve("sources", "nanoaod_opendata2015")).collections["muon"].id.branch == "Muon_isPFcand"
    for name in ("darkflow", "delphes"):
        assert all(not v for v in load_schema(resolve("sources", name)).provides().values())
