"""Typed configuration: pydantic models read from YAML, with CLI overrides.

Every config in the top-level ``data_prep/``, ``models/`` and ``analysis/`` folders maps one-to-one to a
:class:`StrictModel`. Unknown keys are errors that list the valid keys, at any depth.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError

from darkflow.errors import ConfigError, DarkFlowError, InputError


def _known_flow(value: str) -> str:
    from darkflow.flows import FLOWS

    if value not in FLOWS:
        raise ValueError(f"unknown flow {value!r}; valid: {', '.join(sorted(FLOWS))}")
    return value


def _open_unit(value: float) -> float:
    if not 0 < value < 1:
        raise ValueError("must be between 0 and 1")
    return value


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


FlowName = Annotated[str, AfterValidator(_known_flow)]
"""A config field naming a flow of :data:`darkflow.flows.FLOWS` (unknown names list the valid ones)."""
Fraction = Annotated[float, AfterValidator(_open_unit)]
"""A config field strictly between 0 and 1 (e.g. a validation fraction)."""
Count = Annotated[int, AfterValidator(_at_least_one)]
"""A config field counting something that must be there at least once (epochs, events, workers, devices)."""
Name = Annotated[str, BeforeValidator(_path_text), AfterValidator(_not_empty)]
"""A config field naming a file, folder or label: any non-blank string (a ``Path`` is taken as its text)."""


def at_least_one(message: str) -> AfterValidator:
    """The validator of a list option that needs one entry or more: ``Annotated[list[Name], at_least_one("give
    at least one event file (.h5)")]``; ``message`` says what to give."""

    def check(value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError(message)
        return value

    return AfterValidator(check)

M = TypeVar("M", bound="StrictModel")


class StrictModel(BaseModel):
    """Base of every config: unknown keys are rejected, NaN and inf are refused in every float, values are
    validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


YAML_MAX_BYTES = 1 << 20
"""Largest YAML file read (configs are a few kB)."""
YAML_MAX_DEPTH = 64
"""Deepest nesting of mappings and lists."""
YAML_MAX_ALIASES = 100
"""Most ``*alias`` references in one document."""
YAML_MAX_VALUES = 100_000
"""Most values a document may expand to once aliases are followed (a 300-byte alias bomb expands to 10^9)."""


class _LimitedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no ``!!python`` tags) with limits on nesting depth and alias count."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > YAML_MAX_ALIASES:
                raise _LimitError(f"more than {YAML_MAX_ALIASES} aliases")
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise _LimitError(f"nested deeper than {YAML_MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _LimitError(Exception):
    pass


def _count_values(data: Any, budget: int) -> int:
    """Values in ``data`` with shared (aliased) parts counted each time; stops past ``budget``."""
    stack, count = [data], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > budget:
            break
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def load_yaml_text(text: str, where: str) -> Any:
    """Parse one YAML document safely and within the limits above; every problem is a one-line
    :class:`ConfigError` naming ``where`` (and the line, for syntax errors)."""
    try:
        data = yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 (a SafeLoader subclass)
    except _LimitError as err:
        raise ConfigError(f"{where}: refused: {err} (limit of a DarkFlow config)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{where}{line}: not valid YAML ({problem}); only plain YAML is read, no tags "
                          "such as !!python") from None
    except RecursionError:
        raise ConfigError(f"{where}: refused: nested deeper than {YAML_MAX_DEPTH} levels") from None
    if _count_values(data, YAML_MAX_VALUES) > YAML_MAX_VALUES:
        raise ConfigError(f"{where}: refused: expands to more than {YAML_MAX_VALUES:,} values through aliases")
    return data


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (UTF-8, at most 1 MiB, safe tags only, bounded depth and aliases).

    Raises:
        InputError: the file is missing, not a regular file, unreadable, too large or not UTF-8.
        ConfigError: not valid YAML, over a limit, or not a mapping.
    """
    from darkflow.fileio import check_input

    path = check_input(path, what)
    if path.stat().st_size > YAML_MAX_BYTES:
        raise InputError(f"{what} {path} is larger than {YAML_MAX_BYTES >> 20} MiB; a DarkFlow config is a few kB")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    data = load_yaml_text(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The config model classes a field annotation can hold (directly, in a dict value or list item)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Annotated):
        return [m for a in args for m in _model_types(a)]
    if origin is dict and len(args) == 2:
        return _model_types(args[1])
    return []


def _check_keys(model: type[BaseModel], data: Any, where: str) -> None:
    """Raise a :class:`ConfigError` naming the first unknown key in ``data`` and the valid keys."""
    if not isinstance(data, Mapping):
        return
    fields = model.model_fields
    valid = {f.alias or name: name for name, f in fields.items()}
    for key, value in data.items():
        if key not in valid:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
        annotation = fields[valid[key]].annotation
        submodels = _model_types(annotation)
        if not submodels:
            continue
        child = f"{where}.{key}" if where else str(key)
        origin = typing.get_origin(annotation)
        is_dict = origin is dict or any(typing.get_origin(a) is dict for a in typing.get_args(annotation))
        is_list = origin is list or any(typing.get_origin(a) is list for a in typing.get_args(annotation))
        if is_dict and isinstance(value, Mapping):
            for k, v in value.items():
                if isinstance(v, Mapping):
                    _check_keys(submodels[0], v, f"{child}.{k}")
        elif is_list and isinstance(value, list):
            for i, v in enumerate(value):
                _check_keys(submodels[0], v, f"{child}[{i}]")
        elif isinstance(value, Mapping):
            chosen = _by_kind(submodels, value)
            if chosen is not None:
                _check_keys(chosen, value, child)


def _by_kind(submodels: list[type[BaseModel]], value: Mapping) -> type[BaseModel] | None:
    """The model a mapping configures: the only candidate, or the one whose ``kind`` matches."""
    if len(submodels) == 1:
        return submodels[0]
    kinds = {m.model_fields["kind"].default: m for m in submodels if "kind" in m.model_fields}
    if not kinds:
        return None
    kind = value.get("kind", next(iter(kinds)))
    if kind not in kinds:
        raise ConfigError(f"unknown kind {kind!r}; valid: {', '.join(map(str, kinds))}")
    return kinds[kind]


def _one_line(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    got = first.get("input")
    got_text = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    prefix = f"{where}: " if where else ""
    if not loc:  # a model-level validator: its message says which keys
        return f"{prefix}{first['msg'].removeprefix('Value error, ')}{more}"
    if first["type"] == "missing":
        return f"{prefix}`{loc}` is required and was not given{more}"
    return f"{prefix}{loc}: {first['msg'].removeprefix('Value error, ')}{got_text}{more}"


def validate(model: type[M], data: Mapping[str, Any], where: str | None = None) -> M:
    """Build ``model`` from ``data``, turning every problem into a one-line :class:`ConfigError` that starts
    with ``where`` (default: the model's name; ``""``: no prefix). A :class:`DarkFlowError` raised by one of
    the model's validators (e.g. a missing file it reads) is raised as it is."""
    where = model.__name__ if where is None else where
    _check_keys(model, data, where)
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        cause = (err.errors()[0].get("ctx") or {}).get("error")
        if isinstance(cause, DarkFlowError):
            raise cause from None
        raise ConfigError(_one_line(err, where)) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``key.sub=value`` override; the value is read as YAML (``3`` is an int, ``[a, b]`` a list)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key=value or key.sub=value")
    try:
        value = load_yaml_text(raw, f"override {key.strip()}")
    except ConfigError:
        value = raw
    return key.strip(), value


def section_overrides(config: BaseModel, sections: tuple[str, ...]) -> dict[str, Any]:
    """The mapping fields ``sections`` of a command's config as dotted overrides of a recipe, key by key at any
    depth: ``model: {flow_options: {hidden: 16}}`` gives ``{"model.flow_options.hidden": 16}``, so that the
    recipe's other keys stay (an empty mapping below a section replaces the recipe's)."""

    def dotted(prefix: str, value: Any) -> list[tuple[str, Any]]:
        if isinstance(value, dict) and value:
            return [pair for key, sub in value.items() for pair in dotted(f"{prefix}.{key}", sub)]
        return [] if prefix in sections else [(prefix, value)]

    return dict(pair for section in sections for pair in dotted(section, getattr(config, section)))


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted ``overrides`` set (``{"a.b": 1}`` sets ``data["a"]["b"]``)."""
    out = _deep_copy(data)
    for dotted, value in overrides.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[parts[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def load_config(
    model: type[M],
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> M:
    """Load ``model`` from a YAML file (or defaults when ``path`` is None), then apply dotted overrides."""
    data = read_yaml(path) if path is not None else {}
    if overrides:
        data = apply_overrides(data, overrides)
    return validate(model, data, str(path) if path is not None else model.__name__)


def dump_yaml(model: BaseModel) -> str:
    """The resolved config as YAML, to save beside every output."""
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)
