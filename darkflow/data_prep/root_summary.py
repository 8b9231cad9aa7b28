"""``darkflow inspect`` on a ROOT file: its trees, their entries and branch groups, and the ``--source auto``
pick."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from darkflow.errors import DarkFlowError, InputError

WIDTH = 100
"""Characters per line of a listing of branch groups or branches."""
_PREFIX = re.compile(r"^([^_.]+)([_.])(.+)$")


@dataclass(frozen=True)
class BranchGroup:
    """Branches named ``PREFIX_*`` (NanoAOD) or ``PREFIX.*`` (Delphes), and the counter of the collection
    (``nPREFIX`` in NanoAOD, ``PREFIX_size`` in Delphes) when the tree has one."""

    prefix: str
    separator: str
    branches: tuple[str, ...]
    counter: str | None = None

    def describe(self) -> str:
        """``Jet_* (12 branches, counter nJet)``."""
        counter = f", counter {self.counter}" if self.counter else ""
        return f"{self.prefix}{self.separator}* ({len(self.branches)} branches{counter})"


def branch_groups(names: list[str]) -> tuple[list[BranchGroup], list[str]]:
    """Group branch names by the text before their first ``_`` or ``.``, in the order they come.

    A prefix shared by two or more branches makes a group; a collection's counter joins its group. Returns the
    groups and the branches left ungrouped, both in the tree's order.
    """
    keyed: dict[tuple[str, str], list[str]] = {}
    for name in names:
        match = _PREFIX.match(name)
        if match:
            keyed.setdefault((match.group(1), match.group(2)), []).append(name)
    grouped = {key: members for key, members in keyed.items() if len(members) >= 2}
    counters: dict[tuple[str, str], str] = {}
    for prefix, separator in grouped:
        candidates = [f"n{prefix}"] + ([f"{prefix}_size"] if separator == "." else [])
        free = [c for c in candidates if c in names and c not in counters.values()]
        if free:
            counters[prefix, separator] = free[0]
    taken = {name for members in grouped.values() for name in members} | set(counters.values())
    groups = [BranchGroup(prefix, separator, tuple(members), counters.get((prefix, separator)))
              for (prefix, separator), members in grouped.items()]
    return groups, [name for name in names if name not in taken]


def leaf_branches(tree) -> list[str]:
    """The names of a tree's branches that hold data (sub-branches included, their parents left out)."""
    return [branch.name for branch in tree.itervalues(recursive=True) if not branch.branches]


def _listing(items: list[str], indent: str) -> list[str]:
    """``items`` joined by ``, `` into lines of at most :data:`WIDTH` characters, never splitting an item."""
    lines, line = [], ""
    for item in items:
        piece = f"{line}, {item}" if line else item
        if line and len(indent) + len(piece) + 1 > WIDTH:
            lines.append(f"{indent}{line},")
            piece = item
        line = piece
    return [*lines, indent + line] if line else lines


def summarize_root(path: str | os.PathLike) -> str:
    """Trees (entries, branch groups, ungrouped branches) and what ``--source auto`` picks and why.

    Raises :class:`InputError` (one line) for a missing, empty or non-ROOT file and one uproot cannot read.
    """
    from darkflow.data_prep.detect import check_schemas, pick
    from darkflow.data_prep.root_reader import is_root_file
    from darkflow.fileio import check_input

    path = check_input(path, "ROOT file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if not is_root_file(path):
        raise InputError(f"{path}: not a ROOT file (no 'root' signature)")
    try:
        import uproot

        with uproot.open(path) as handle:
            names = dict.fromkeys(key.rsplit(";", 1)[0] for key, kind in handle.classnames().items()
                                  if kind in ("TTree", "TNtuple"))
            trees = [(name, handle[name]) for name in names]
            lines = [f"{path}  ({path.stat().st_size / 2**20:.1f} MiB, ROOT file, {len(trees)} "
                     f"tree{'s' if len(trees) != 1 else ''})"]
            checks = check_schemas(handle)
            for name, tree in trees:
                lines += _tree_lines(name, tree, [c for c in checks if c.tree == name])
            detection = pick(checks)
    except DarkFlowError:
        raise
    except Exception as err:  # uproot raises many types for corrupt or truncated files
        raise InputError(f"{path}: cannot be read as ROOT ({type(err).__name__}: {' '.join(str(err).split())})") \
            from None
    if not trees:
        lines.append("no tree (TTree) in the file")
    picked = detection.source or "none; prepare needs `source` set to a FILE.yaml describing its branches"
    lines.append(f"source auto: {picked}")
    lines.append(f"  why: {detection.reason}")
    return "\n".join(lines)


def _tree_lines(name: str, tree, checks: list) -> list[str]:
    names = leaf_branches(tree)
    groups, ungrouped = branch_groups(names)
    lines = [f"tree {name}: {tree.num_entries} entries, {len(names)} branches"]
    if groups:
        lines += ["  groups:", *_listing([g.describe() for g in groups], "    ")]
    if ungrouped:
        lines += [f"  ungrouped ({len(ungrouped)}):", *_listing(ungrouped, "    ")]
    if checks:
        lines += ["  built-in sources of this tree:", *(f"    {c.describe()}" for c in checks)]
    else:
        lines.append("  no built-in source reads this tree")
    return lines
