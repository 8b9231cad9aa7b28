"""The command line: instant help (no heavy imports at start-up), inspect output."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, random_nanoaod, write_tree

HEAVY = ("torch", "uproot", "awkward", "h5py", "matplotlib", "lightning", "vector", "pydantic")


def test_cli_import_is_light():
    code = f"import sys, darkflow.cli; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"darkflow.cli imports {out} at start-up"


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "darkflow", "--help"], capture_output=True, text=True, check=True)
    for verb in ("prepare", "inspect", "merge"):
        assert verb in out.stdout


def test_inspect_summarizes(tmp_path, capsys):
    from darkflow.cli import main

    data = random_nanoaod(np.random.default_rng(0), 120)
    data["MET_pt"] *= 3
    src = write_tree(tmp_path / "ttbar.root", data)
    out = tmp_path / "t.h5"
    assert main(["prepare", str(src), "--out", str(out), "--channel", "chan2b", "-q"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "read: 120" in text and "channel: chan2b" in text and "ttbar" in text
    assert "32 rows x 4 features (E, pt, eta, phi)" in text
    assert "selected: 0" not in text
    assert "simulation: yes" in text  # NanoAOD with genWeight
    assert "objects: ID on jet, bjet, eplus, eminus, muplus, muminus, photon; isolation on eplus" in text
    assert "overlap removal: jet/bjet within Delta R < 0.4 of eplus/eminus/muplus/muminus/photon" in text


# One case per verb: the keys every Config needs, and one option set three ways (YAML, flag, --set) with the
# value each way gives; `get` reads the resolved value off the Config.
REGIME = {
    "generate": ({"process": "ttbar", "events": 5}, "seed", ["--seed"], (1, 2, 3), lambda c: c.seed),
    "prepare": ({"inputs": ["a.root"], "out": "a.h5"}, "chunk_size", ["--chunk-size"], (10, 20, 30),
                lambda c: c.chunk_size),
    "inspect": ({}, "files", [], (["a.h5"], ["b.h5"], ["c.h5"]), lambda c: c.files),
    "merge": ({"shards": ["a.h5", "b.h5"]}, "out", ["--out"], ("x.h5", "y.h5", "z.h5"), lambda c: c.out),
    "jetimages": ({"inputs": ["a.root"], "out": "j.h5"}, "size", ["--size"], (16, 24, 40), lambda c: c.size),
    "train": ({"data": "sm.h5", "out": "run"}, "training.epochs", ["--epochs"], (3, 4, 5),
              lambda c: c.train_config.training.epochs),
    "score": ({"run": "run", "data": ["a.h5"]}, "out", ["--out"], ("x.h5", "y.h5", "z.h5"), lambda c: c.out),
    "scan": ({"scores": "s.h5", "background": "sm_test", "out": "scan"}, "lumi", ["--lumi"], (2.0, 3.0, 4.0),
             lambda c: c.lumi),
    "flag": ({"scores": "s.h5", "label": "zprime", "out": "c.csv"}, "threshold", ["--threshold"], (1.0, 2.0, 3.0),
             lambda c: c.threshold),
    "report": ({"run": "run", "scan": "scan", "scores": "s.h5", "out": "R.md"}, "style", ["--style"],
               ("CMS", "ATLAS", "LHCb"), lambda c: c.style),
    "export": ({"run": "run"}, "out", ["--out"], ("a.onnx", "b.onnx", "c.onnx"), lambda c: c.out),
    "demo": ({}, "workers", ["--workers"], (3, 4, 5), lambda c: c.workers),
    "cflow train": ({"data": ["images"], "out": "run"}, "training.epochs", ["--epochs"], (2, 3, 4),
                    lambda c: c.cflow_config.training.epochs),
    "cflow score": ({"run": "run", "data": ["images"], "out": "out"}, "overlays", ["--overlays"], (1, 2, 3),
                    lambda c: c.overlays),
}


def _nested(key: str, value):
    head, _, rest = key.partition(".")
    return {head: _nested(rest, value) if rest else value}


def _words(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@pytest.mark.parametrize("verb", sorted(REGIME))
def test_every_verb_has_help_with_an_example(verb, capsys):
    from darkflow.cli import VERBS, build_parser

    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*verb.split(), "--help"])
    text = capsys.readouterr().out
    example = next(v.example for v in VERBS if v.name == verb)
    assert info.value.code == 0 and "--config FILE" in text and "--set KEY=VALUE" in text
    assert f"example: darkflow {verb}" in text and example.startswith(f"darkflow {verb} ")


def test_every_verb_is_in_the_regime_test():
    from darkflow.cli import VERBS

    assert {verb.name for verb in VERBS} == set(REGIME)


@pytest.mark.parametrize("verb", sorted(REGIME))
def test_config_file_then_flags_then_set(verb, tmp_path):
    import yaml

    from darkflow.cli import parse

    base, key, flag, (in_file, by_flag, by_set), get = REGIME[verb]
    config = tmp_path / "options.yaml"
    config.write_text(yaml.safe_dump({**base, **_nested(key, in_file)}))
    words = verb.split()
    name, from_file = parse([*words, "--config", str(config)])
    assert name == verb and get(from_file) == in_file
    flags = [*words, "--config", str(config), *flag, *_words(by_flag)]
    assert get(parse(flags)[1]) == by_flag
    assert get(parse([*flags, "--set", f"{key}={yaml.safe_dump(by_set, default_flow_style=True).strip()}"])[1]) == by_set


def test_train_overrides_change_one_key_of_the_recipe(tmp_path):
    from darkflow.cli import parse

    config = tmp_path / "train.yaml"
    config.write_text("data: sm.h5\nout: run\nrecipe: density\ntraining: {batch_size: 64}\n")
    _, options = parse(["train", "--config", str(config), "--flow", "realnvp", "--set", "training.learning_rate=3e-4",
                        "--set", 'model.flow_options={"num_layers": 1}'])
    resolved = options.train_config
    assert resolved.model.kind == "density" and resolved.model.flow == "realnvp"
    # key by key at any depth: the recipe's other flow option and its noise stay
    assert resolved.model.flow_options == {"num_layers": 1, "hidden_features": 128} and resolved.model.noise == 0.05
    assert resolved.training.batch_size == 64 and resolved.training.learning_rate == 3e-4
    assert resolved.training.patience == 5  # from models/density.yaml


# Zero, negative or empty values each verb's Config refuses: (verb, key, bad values).
REFUSED = [
    ("generate", "events", (0, -1)), ("generate", "workers", (0, -3)),
    ("prepare", "max_events", (0, -1)), ("prepare", "chunk_size", (0, -5)), ("prepare", "workers", (0, -1)),
    ("prepare", "inputs", ([],)), ("prepare", "out", ("", " ")),
    ("inspect", "files", ([], [""])),
    ("merge", "shards", ([],)), ("merge", "out", ("",)),
    ("jetimages", "size", (0, -32)), ("jetimages", "max_events", (0, -1)), ("jetimages", "inputs", ([],)),
    ("train", "training.epochs", (0, -1)), ("train", "training.batch_size", (0, -8)),
    ("train", "training.devices", (0, -1)), ("train", "training.num_nodes", (0, -2)),
    ("train", "training.patience", (-1,)), ("train", "data", ("",)),
    ("score", "data", ([],)), ("score", "out", ("",)),
    ("scan", "lumi", (0.0, -1.0)), ("scan", "replicas", (0, -1)), ("scan", "eps_b", ("0", "-1e-3", "2")),
    ("flag", "threshold", (float("inf"),)), ("flag", "out", ("",)),
    ("report", "latent_events", (0, -100)),
    ("export", "run", ("",)),
    ("demo", "workers", (0, -2)),
    ("cflow train", "training.epochs", (0, -1)), ("cflow train", "training.batch_size", (0, -1)),
    ("cflow train", "training.devices", (0, -1)), ("cflow train", "image_size", (0, -64)),
    ("cflow score", "overlays", (-1,)), ("cflow score", "data", ([],)),
]


def test_every_verb_refuses_something():
    assert {verb for verb, _, _ in REFUSED} == set(REGIME)


@pytest.mark.parametrize(("verb", "key", "values"), REFUSED, ids=[f"{v}-{k}" for v, k, _ in REFUSED])
def test_bad_counts_and_names_are_one_line_errors(verb, key, values, tmp_path):
    import yaml

    from darkflow.cli import parse
    from darkflow.errors import DarkFlowError

    base = REGIME[verb][0]
    for value in values:
        config = tmp_path / "options.yaml"
        config.write_text(yaml.safe_dump({**base, **_nested(key, value)}))
        with pytest.raises(DarkFlowError) as info:
            parse([*verb.split(), "--config", str(config)])
        message = str(info.value)
        assert "\n" not in message and key.rsplit(".", 1)[-1] in message


def test_bad_count_through_the_command_line(tmp_path, capsys):
    from darkflow.cli import main

    assert main(["train", "--data", "sm.h5", "--out", str(tmp_path / "run"), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training.epochs: must be at least 1 (got 0)" in err
    assert main(["flag", "--scores", "s.h5", "--label", "x", "--out", str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give exactly one of --eps-b (a background efficiency) or --threshold" in err
    assert main(["score", "--run", "run", "--data", "a.h5"]) == 2
    assert "darkflow score: error: --out is required and was not given" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND_LINE = re.compile(r"\bdarkflow [a-z]+( [a-z]+)? [^\n]*--[a-z]")


def _shown_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals of a module (an f-string as one text, its fields as {}); docstrings, which are strings
    standing alone as statements, left out."""
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    inside_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
            found.append((node.lineno, text))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and id(node) not in inside_fstrings):
            found.append((node.lineno, node.value))
    return found


def test_no_message_outside_the_cli_names_a_flag():
    """The library names Config keys (in backticks: `eps_b`); only cli.py knows the flags. A whole command line
    (``darkflow flag --scores ...``, e.g. in the demo's COMPARISON.md) is not a message naming a flag."""
    package = ROOT / "darkflow"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "cli.py" and path.parent == package:
            continue
        for line, text in _shown_strings(ast.parse(path.read_text())):
            if FLAG.search(text) and not COMMAND_LINE.search(text):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {text.strip()[:80]}")
    assert not offenders, "\n".join(offenders)


def test_keys_in_messages_are_shown_as_flags():
    from darkflow.cli import flags_named

    assert flags_named("choose another `channel` (`objects`: x)", "prepare") == "choose another --channel (--objects: x)"
    assert flags_named("`training.epochs` and `resume`", "train") == "--epochs and --resume"
    assert flags_named("`recipe`", "train") == "--model" and flags_named("`model`", "cflow train") == "--model"
    assert flags_named("generate with `constituents`", "jetimages") == "generate with --constituents"
    assert flags_named("no `model.pt` here", "score") == "no `model.pt` here"
