"""``--source auto``: which built-in source schema reads an input, and why (used by ``prepare`` and ``inspect``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkflow.data_prep import builtin
from darkflow.data_prep.schema import SourceSchema, load_schema
from darkflow.errors import InputError

ROOT_SOURCES = ("nanoaod", "nanoaod_opendata2015", "darkflow", "delphes")
"""Built-in schemas tried, in order, by ``--source auto``: the first whose tree and branches exist and
whose b-tag and ID branches are filled (see :func:`unfilled`; DeepCSV and the muon IDs are not in 2015 CMS
Open Data) is taken, else the first whose branches exist."""
SHOWN_MISSING = 3
"""Missing branches named in a :meth:`SchemaCheck.describe`."""


@dataclass(frozen=True)
class SchemaCheck:
    """How one built-in schema fits a ROOT file.

    Attributes:
        name: the schema (``nanoaod``, ``delphes``, ...).
        tree: the tree it reads.
        has_tree: the file has that tree.
        n_branches: branches the schema reads.
        missing: those the tree lacks (empty without the tree: nothing was compared).
        unfilled: what the tree does not fill (:func:`unfilled`), judged only when no branch is missing.
    """

    name: str
    tree: str
    has_tree: bool
    n_branches: int
    missing: tuple[str, ...] = ()
    unfilled: tuple[str, ...] = ()

    @property
    def matches(self) -> bool:
        """The tree and every branch the schema reads exist."""
        return self.has_tree and not self.missing

    @property
    def filled(self) -> bool:
        """It matches and its b-tag and ID branches are filled."""
        return self.matches and not self.unfilled

    def problem(self) -> str:
        """Why it does not fit, in a phrase (empty when it does): ``lacks 2 of its 23 branches (Jet_btag, weight)``,
        ``no tree 'Delphes'``, ``Jet_btagDeepB holds one constant value (no jet is a b-jet)``."""
        if not self.has_tree:
            return f"no tree {self.tree!r}"
        if self.missing:
            shown = ", ".join(self.missing[:SHOWN_MISSING]) + (", ..." if len(self.missing) > SHOWN_MISSING else "")
            return f"tree {self.tree!r} lacks {len(self.missing)} of its {self.n_branches} branches ({shown})"
        return "; ".join(self.unfilled)

    def describe(self) -> str:
        """``nanoaod: tree 'Events' lacks 2 of its 26 branches (Jet_btagDeepB, Muon_mediumId)``."""
        fits = f"tree {self.tree!r} has all {self.n_branches} of its branches"
        if self.filled:
            return f"{self.name}: {fits}, b-tag and IDs filled"
        return f"{self.name}: {fits}, but {self.problem()}" if self.matches else f"{self.name}: {self.problem()}"


@dataclass(frozen=True)
class Detection:
    """What ``--source auto`` picks for one input (``source`` None: nothing matches) and why.

    ``checks``: every built-in ROOT schema tried, in order (empty for a CSV file).
    """

    source: str | None
    reason: str
    checks: tuple[SchemaCheck, ...] = ()


def check_schemas(handle) -> tuple[SchemaCheck, ...]:
    """Every schema of :data:`ROOT_SOURCES` against an open ROOT file (``uproot.open``)."""
    from darkflow.data_prep.root_reader import branch_names

    checks = []
    for name in ROOT_SOURCES:
        schema = load_schema(builtin.resolve("sources", name))
        wanted = schema.branches()
        if schema.tree not in handle:
            checks.append(SchemaCheck(name, schema.tree, False, len(wanted)))
            continue
        tree = handle[schema.tree]
        have = branch_names(tree)
        missing = tuple(b for b in wanted if b not in have)
        found = () if missing else tuple(unfilled(tree, schema))
        checks.append(SchemaCheck(name, schema.tree, True, len(wanted), missing, found))
    return tuple(checks)


def pick(checks: tuple[SchemaCheck, ...]) -> Detection:
    """The rule of :data:`ROOT_SOURCES` applied to ``checks``, with the reason in words."""
    order = ", ".join(c.name for c in checks)
    for i, check in enumerate(checks):
        if check.filled:
            passed = "".join(f"; {c.name}, before it, does not: {c.problem()}" for c in checks[:i] if c.has_tree)
            return Detection(check.name, f"the first of {order} that fits (tree {check.tree!r} has all "
                             f"{check.n_branches} of its branches, b-tag and IDs filled){passed}", checks)
    matching = [c for c in checks if c.matches]
    if matching:
        return Detection(matching[0].name, f"the first of {order} whose branches all exist; none has its b-tag and "
                         f"IDs filled: {'; '.join(f'{c.name}: {c.problem()}' for c in matching)}", checks)
    return Detection(None, f"none of {order} fits: {'; '.join(f'{c.name}: {c.problem()}' for c in checks)}", checks)


def detect_source(path: Path) -> Detection:
    """What ``--source auto`` picks for one input from its content: CSV text or a ROOT tree's branches.

    Raises :class:`InputError` for a missing or empty file, one that is neither ROOT nor CSV, and a ROOT file
    that uproot cannot open.
    """
    from darkflow.data_prep.root_reader import is_root_file

    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if not is_root_file(path):
        with open(path, "rb") as handle:
            head = handle.read(4096)
        if b";" in head and b"\0" not in head:
            return Detection("darkmachines", "text with ';' separated fields: a Dark Machines CSV file")
        raise InputError(f"{path}: neither a ROOT file nor a Dark Machines CSV file (no ';' separated fields)")
    import uproot

    try:
        handle = uproot.open(path)
    except Exception as err:
        raise InputError(f"{path}: cannot be read as ROOT ({type(err).__name__}: {err})") from None
    return pick(check_schemas(handle))


def unfilled(tree, schema: SourceSchema, entries: int = 10_000) -> list[str]:
    """What the schema relies on that the tree does not fill, judged on the first ``entries`` events.

    A b-tag branch holding one constant value (no jet would be a b-jet), and an ID branch holding one
    constant value that fails the ID (every object of the collection would be dropped), as DeepCSV and
    ``Muon_mediumId`` are in 2015 CMS Open Data. Returns one phrase per problem.
    """
    import awkward as ak

    stop = min(tree.num_entries, entries)

    def values(branch: str) -> np.ndarray:
        return ak.to_numpy(ak.flatten(tree[branch].array(entry_stop=stop, library="ak"), axis=None))

    found = []
    for name, coll in schema.collections.items():
        if coll.btag is not None:
            flat = values(coll.btag.branch)
            if len(flat) and np.unique(flat).size == 1:
                found.append(f"{coll.btag.branch} holds one constant value (no jet is a b-jet)")
        if coll.id is not None:
            flat = values(coll.id.branch)
            if len(flat) and np.unique(flat).size == 1 and not coll.id.passes(flat[:1]).any():
                found.append(f"{coll.id.branch} holds one constant value that fails the ID "
                             f"({coll.id.describe()}: every {name} is dropped)")
    return found
