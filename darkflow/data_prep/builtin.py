"""Find built-in or user YAML configs of the ``data_prep/`` folders by name or path."""

from __future__ import annotations

from pathlib import Path

from darkflow.errors import ConfigError

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
"""The package's copy of the top-level ``data_prep/`` folder (a link in a source checkout)."""
MODEL_CONFIGS = Path(__file__).resolve().parent.parent / "model_configs"
"""The package's copy of the top-level ``models/`` folder (a link in a source checkout)."""


def builtin_names(kind: str, base: Path = RESOURCES) -> list[str]:
    """Names of the built-in configs of one kind (``sources``, ``channels``, ``layouts``, ``objects``)."""
    return sorted(p.stem for p in (base / kind).glob("*.yaml"))


def resolve(kind: str, name_or_path: str | Path, extra: tuple[str, ...] = (), label: str | None = None,
            base: Path = RESOURCES) -> Path:
    """Path of a built-in config called ``name_or_path`` (in ``base / kind``) or of a user YAML file.

    ``extra`` names other valid choices (``auto``, ``none``, mixtures); they are listed in the error.
    ``label`` names the kind in messages (default: ``kind`` without its plural ``s``).
    """
    label = label or kind.rstrip("s")
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        from darkflow.fileio import check_input

        return check_input(text, f"{label} file")
    path = base / kind / f"{text}.yaml"
    if path.is_file():
        return path
    choices = [*extra, *builtin_names(kind, base)]
    raise ConfigError(
        f"unknown {label} {text!r}; valid: {', '.join(choices)} or a path to a .yaml file"
    )
