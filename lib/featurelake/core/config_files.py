"""Configuration files: YAML read strictly, merged with the origin of every key, validated.

:func:`load_yaml_file` reads one mapping (a key repeated in a mapping is an error naming both
lines; ``${VAR}`` and ``${VAR:-default}`` come from the environment). :func:`merge_into`
deep-merges files and ``--conf`` overrides (:func:`parse_override`) and records which one set
each dotted key, so that :func:`parse_model`'s errors name the file, the key path and what was
expected.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from featurelake.core.errors import ConfigError

__all__ = ["load_yaml_file", "merge_into", "parse_model", "parse_override", "source_of"]

# libyaml's loader when PyYAML was built with it (its wheels are): the same documents, about
# ten times faster than the pure-Python one (every job reads a dozen of these files).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
ModelT = TypeVar("ModelT", bound=BaseModel)


def _interpolate(value: Any, source: str, key: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in strings, recursively."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(
                source,
                key,
                f"environment variable {name} is not set and ${{{name}}} has no default",
            )

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, source, _join(key, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class _DuplicateKeyError(Exception):
    """A mapping repeats a key (the caller, who knows the file, makes it a ConfigError)."""

    def __init__(self, key: str, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(key)
        self.key = key
        if first.line == again.line:  # a flow mapping, {a: 1, a: 2}
            where = f"line {first.line + 1}, columns {first.column + 1} and {again.column + 1}"
        else:
            where = f"lines {first.line + 1} and {again.line + 1}"
        self.problem = f"duplicated key (at {where}); a key may appear once in a mapping"


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(_YAML_LOADER):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a key repeated in one mapping.

    PyYAML keeps the last value of a repeated key without a word; the document's nodes are
    checked before construction because only there are key paths and lines known. Keys merged
    in with ``<<: *anchor`` may be overridden, as YAML intends.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        self._check_unique_keys(node, "", set())
        return super().construct_document(node)

    def _check_unique_keys(self, node: yaml.Node, path: str, visited: set[int]) -> None:
        if id(node) in visited:  # an alias: its anchor was checked already
            return
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._check_unique_keys(item, f"{path}[{index}]", visited)
            return
        if not isinstance(node, yaml.MappingNode):
            return
        first_marks: dict[Any, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._check_unique_keys(value_node, path, visited)
                continue
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            dotted = _join(path, name)
            if isinstance(key_node, yaml.ScalarNode):
                # The constructed key, so that `1` and `01`, or `a` and `'a'`, are one key.
                key = self.construct_object(key_node, deep=True)
                if key in first_marks:
                    raise _DuplicateKeyError(dotted, first_marks[key], key_node.start_mark)
                first_marks[key] = key_node.start_mark
            self._check_unique_keys(value_node, dotted, visited)


def _load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping with environment interpolation.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, repeats a key in a
            mapping (both lines named) or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read the file: {exc}") from exc
    try:
        data = _load_yaml_text(text)
    except _DuplicateKeyError as exc:
        raise ConfigError(str(path), exc.key, exc.problem) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            str(path), "", f"expected a mapping at top level, got {type(data).__name__}"
        )
    result = _interpolate(data, str(path), "")
    assert isinstance(result, dict)
    return result


def merge_into(
    base: dict[str, Any],
    overlay: Mapping[str, Any],
    origin: dict[str, str],
    source: str,
    prefix: str = "",
) -> None:
    """Deep-merge ``overlay`` into ``base`` in place, recording each leaf's source."""
    for key, value in overlay.items():
        dotted = _join(prefix, str(key))
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_into(base[key], value, origin, source, dotted)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
            origin[dotted] = source
            if isinstance(value, Mapping):
                _record(value, origin, source, dotted)


def _record(tree: Mapping[str, Any], origin: dict[str, str], source: str, prefix: str) -> None:
    for key, value in tree.items():
        dotted = _join(prefix, str(key))
        origin[dotted] = source
        if isinstance(value, Mapping):
            _record(value, origin, source, dotted)


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError("--conf", text, "expected dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError("--conf", text, "expected dotted.key=value")
    try:
        value = _load_yaml_text(raw) if raw.strip() else ""
    except _DuplicateKeyError as exc:
        raise ConfigError(f"--conf {text}", _join(key, exc.key), exc.problem) from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def source_of(origin: Mapping[str, str], dotted: str, default: str) -> str:
    """The file that set ``dotted`` or its closest ancestor."""
    parts = dotted.split(".")
    while parts:
        found = origin.get(".".join(parts))
        if found:
            return found
        parts.pop()
    return default


def _describe(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"value {error.get('input')!r} is not one of the allowed values: {expected}"
    return f"{error.get('msg', 'invalid value')} (got {error.get('input')!r})"


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Field names at the parent of ``loc``, for 'unknown key' messages."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        if not isinstance(annotation, type):
            # an optional section (``Section | None``): the one model among the union's members
            members = [
                a
                for a in typing.get_args(annotation)
                if isinstance(a, type) and issubclass(a, BaseModel)
            ]
            annotation = members[0] if len(members) == 1 else None
        current = annotation
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def parse_model(
    model: type[ModelT], data: Mapping[str, Any], origin: Mapping[str, str] | str
) -> ModelT:
    """Validate ``data`` into ``model``; errors name the source file and key path.

    Args:
        model: the pydantic model to build.
        data: the merged mapping.
        origin: the source file, or a map from dotted key to the file that set it.

    Raises:
        ConfigError: with every problem found, one per line.
    """
    default = origin if isinstance(origin, str) else "configuration"
    origins: Mapping[str, str] = {} if isinstance(origin, str) else origin
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        first: tuple[str, str] | None = None
        for error in exc.errors():
            loc = list(error["loc"])
            dotted = ".".join(str(p) for p in loc)
            source = source_of(origins, dotted, default)
            problem = _describe(error)
            if error.get("type") == "extra_forbidden":
                allowed = _allowed_keys(model, loc)
                if allowed:
                    problem += f" (allowed: {', '.join(allowed)})"
            problems.append(f"{source}: {dotted}: {problem}")
            first = first or (source, dotted)
        if len(problems) == 1 and first:
            raise ConfigError(first[0], first[1], problems[0].split(": ", 2)[2]) from None
        assert first is not None
        raise ConfigError(first[0], first[1], "\n  " + "\n  ".join(problems)) from None
