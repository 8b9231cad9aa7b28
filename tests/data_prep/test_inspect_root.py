"""``darkflow inspect`` on ROOT files: trees, entries, branch groups and the ``--source auto`` pick, each checked
against uproot read directly; event files keep their summary; bad files are one-line errors."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from conftest import random_nanoaod, write_tree


def _inspect(capsys, *files: str) -> tuple[int, str, str]:
    from darkflow.cli import main

    code = main(["inspect", *map(str, files)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _leaves(tree) -> list[str]:
    """Branch names by uproot, the way a user lists them: the keys without sub-branches of their own."""
    return [key for key in tree.keys(recursive=True, full_paths=False) if not tree[key].keys()]


def _delphes() -> dict:
    jets = ak.zip({"PT": [[50.0], [30.0, 80.0], [], [20.0]], "Eta": [[0.0], [0.1, -0.2], [], [1.0]],
                   "Phi": [[0.0], [1.0, 2.0], [], [0.3]], "Mass": [[5.0], [1.0, 2.0], [], [3.0]],
                   "BTag": ak.Array([[1], [0, 1], [], [0]])})
    return {
        "Jet": jets,
        "Electron": ak.zip({"PT": [[20.0], [], [], []], "Eta": [[1.3], [], [], []], "Phi": [[0.1], [], [], []],
                            "Charge": ak.Array([[1], [], [], []])}),
        "Muon": ak.zip({"PT": [[], [], [17.0], []], "Eta": [[], [], [1.1], []], "Phi": [[], [], [-1.0], []],
                        "Charge": ak.Array([[], [], [1], []])}),
        "Photon": ak.zip({"PT": [[], [], [45.0], []], "Eta": [[], [], [0.0], []], "Phi": [[], [], [3.0], []],
                          "E": [[], [], [45.0], []]}),
        "MissingET": ak.zip({"MET": [[10.0], [20.0], [30.0], [5.0]], "Phi": [[0.5], [0.6], [0.7], [0.8]]}),
        "Event": ak.zip({"Weight": [[2.0], [3.0], [4.0], [1.0]], "Number": ak.Array([[7], [8], [9], [10]])}),
    }


def _unmatched(n: int) -> dict:
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, n)
    tracks = ak.unflatten(ak.zip({"px": rng.normal(size=int(counts.sum())),
                                  "py": rng.normal(size=int(counts.sum()))}), counts)
    return {"Trk": tracks, "vertex_z": rng.normal(size=n), "runNumber": np.arange(n, dtype=np.int64)}


def _two_trees(path, first: tuple[str, dict, str], second: tuple[str, dict, str]):
    import uproot

    with uproot.recreate(path) as handle:
        for name, data, sep in (first, second):
            types = {k: v.type.content if isinstance(v, ak.Array) else np.asarray(v).dtype for k, v in data.items()}
            tree = handle.mktree(name, types, field_name=lambda o, i, sep=sep: f"{o}{sep}{i}",
                                 counter_name=lambda c: "n" + c)
            tree.extend(data)
    return path


def test_delphes_tree_beside_a_tree_no_source_reads(tmp_path, capsys):
    import uproot

    src = _two_trees(tmp_path / "mixed.root", ("Delphes", _delphes(), "."), ("Other", _unmatched(7), "_"))
    code, out, err = _inspect(capsys, src)
    assert code == 0 and err == ""
    with uproot.open(src) as handle:
        delphes, other = handle["Delphes"], handle["Other"]
        names = _leaves(delphes)
        assert f"tree Delphes: {delphes.num_entries} entries, {len(names)} branches" in out
        assert f"tree Other: {other.num_entries} entries, {len(_leaves(other))} branches" in out
        for prefix in ("Jet", "Electron", "Muon", "Photon", "MissingET", "Event"):
            count = sum(name.startswith(f"{prefix}.") for name in names)
            assert f"{prefix}.* ({count} branches, counter n{prefix})" in out
        trk = sum(name.startswith("Trk_") for name in _leaves(other))
        assert f"Trk_* ({trk} branches, counter nTrk)" in out
    assert delphes.num_entries == 4 and other.num_entries == 7
    body = out.split("tree Other:")[1]
    assert "ungrouped (2):\n    vertex_z, runNumber" in body and "no built-in source reads this tree" in body
    # 5 jet, 4 electron, 4 muon and 4 photon branches, 2 of MET, weight and event number
    assert "delphes: tree 'Delphes' has all 21 of its branches, b-tag and IDs filled" in out
    assert "source auto: delphes\n" in out
    from pathlib import Path

    from darkflow.data_prep.prepare import resolve_source

    assert resolve_source("auto", [Path(src)])[0] == "delphes"  # what prepare would take


def test_no_source_matches(tmp_path, capsys):
    from darkflow.data_prep import builtin
    from darkflow.data_prep.schema import load_schema

    only_other = write_tree(tmp_path / "other.root", _unmatched(5), tree="Other")
    code, out, _ = _inspect(capsys, only_other)
    assert code == 0
    assert "source auto: none" in out and "none of nanoaod, nanoaod_opendata2015, darkflow, delphes fits" in out
    assert "nanoaod: no tree 'Events'" in out and "delphes: no tree 'Delphes'" in out
    data = random_nanoaod(np.random.default_rng(4), 20)
    data["Muon"] = data["Muon"][[f for f in ak.fields(data["Muon"]) if f != "mediumId"]]
    no_id = write_tree(tmp_path / "noid.root", data)
    code, out, _ = _inspect(capsys, no_id)
    wanted = len(load_schema(builtin.resolve("sources", "nanoaod")).branches())
    assert code == 0 and f"nanoaod: tree 'Events' lacks 1 of its {wanted} branches (Muon_mediumId)" in out
    assert "source auto: none" in out


def test_cms_open_data(real_nanoaod, capsys):
    import uproot

    from darkflow.data_prep.prepare import resolve_source

    code, out, err = _inspect(capsys, real_nanoaod)
    assert code == 0 and err == ""
    with uproot.open(real_nanoaod) as handle:
        assert [k.split(";")[0] for k, c in handle.classnames().items() if c == "TTree"] == ["Events"]
        tree = handle["Events"]
        names = list(tree.keys())
        assert f"tree Events: {tree.num_entries} entries, {len(names)} branches" in out
        for prefix in ("Jet", "Muon", "Electron", "Photon", "MET", "HLT", "Flag"):
            count = sum(name.startswith(f"{prefix}_") for name in names)
            counter = f", counter n{prefix}" if f"n{prefix}" in names else ""
            assert f"{prefix}_* ({count} branches{counter})" in out
        assert "Jet_* (40 branches, counter nJet)" in out and "HLT_* (441 branches)" in out
    picked = resolve_source("auto", [real_nanoaod])[0]
    assert picked == "nanoaod_opendata2015" and f"source auto: {picked}\n" in out
    why = out.split("why: ")[1]
    assert "nanoaod, before it, does not: Jet_btagDeepB holds one constant value" in why


def test_every_branch_is_listed_once(real_nanoaod):
    import uproot

    from darkflow.data_prep.root_summary import branch_groups

    with uproot.open(real_nanoaod) as handle:
        names = list(handle["Events"].keys())
    groups, ungrouped = branch_groups(names)
    listed = [b for g in groups for b in g.branches] + [g.counter for g in groups if g.counter] + ungrouped
    assert sorted(listed) == sorted(names)
    assert all(len(g.branches) >= 2 for g in groups)
    assert all(b.startswith(f"{g.prefix}{g.separator}") for g in groups for b in g.branches)


def test_groups_and_counters_by_name():
    from darkflow.data_prep.root_summary import branch_groups

    groups, ungrouped = branch_groups(["Jet", "Jet.PT", "Jet.Eta", "Jet_size", "nMuon", "Muon_pt", "Muon_eta",
                                       "MET_pt", "run", "HLT_A", "HLT_B", "HLT_C"])
    assert [g.describe() for g in groups] == ["Jet.* (2 branches, counter Jet_size)",
                                               "Muon_* (2 branches, counter nMuon)", "HLT_* (3 branches)"]
    assert ungrouped == ["Jet", "MET_pt", "run"]


def test_mixed_inputs_keep_the_event_file_summary(tmp_path, capsys):
    from darkflow.cli import main
    from darkflow.events import summarize

    src = write_tree(tmp_path / "ttbar.root", random_nanoaod(np.random.default_rng(0), 60))
    out_h5 = tmp_path / "t.h5"
    assert main(["prepare", str(src), "--out", str(out_h5), "-q"]) == 0
    capsys.readouterr()
    code, out, _ = _inspect(capsys, out_h5, src)
    assert code == 0
    assert out.startswith(summarize(out_h5) + "\n")
    assert "tree Events: 60 entries" in out and "source auto: nanoaod\n" in out


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "file is empty"),
    (b"hello, not ROOT\n", "not a ROOT file"),
    (b"root" + bytes(range(256)) * 4, "cannot be read as ROOT"),
])
def test_bad_root_files_are_one_line_errors(tmp_path, capsys, content, fragment):
    bad = tmp_path / "bad.root"
    bad.write_bytes(content)
    code, out, err = _inspect(capsys, bad)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and fragment in err, err


def test_truncated_and_missing_root_files(tmp_path, capsys):
    src = write_tree(tmp_path / "ttbar.root", random_nanoaod(np.random.default_rng(1), 200))
    cut = tmp_path / "cut.root"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    code, out, err = _inspect(capsys, cut)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "cut.root" in err, err
    code, _, err = _inspect(capsys, tmp_path / "none.root")
    assert code == 2 and "ROOT file not found" in err
