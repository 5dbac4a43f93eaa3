"""Config files shared by both programs: YAML read into a pydantic model, with every error
reported as ``file:line: key.path: message`` (the house style asks for file and line).

>>> from pydantic import BaseModel
>>> class C(BaseModel):
...     port: int
>>> load_config(C, text="port: 1883\\n").port
1883
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """The config file is unreadable or does not fit the model. ``errors`` holds one line each."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    return _Lined(mapping, lines)


class _Lined(dict[Any, Any]):
    def __init__(self, data: dict[Any, Any], lines: dict[Any, int]) -> None:
        super().__init__(data)
        self.lines = lines


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(data: Any, loc: Sequence[int | str]) -> int | None:
    line: int | None = None
    node = data
    for part in loc:
        if isinstance(node, _Lined) and part in node.lines:
            line = node.lines[part]
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, _Lined) and isinstance(part, str):
            continue  # a tagged union's tag (e.g. scanner.sane.dpi): not a key in the file
        else:
            break
    return line


def load_config(model: type[M], path: Path | None = None, *, text: str | None = None) -> M:
    """Read ``path`` (or ``text``) as YAML and validate it against ``model``.

    An empty file gives the model's defaults. Raises :class:`ConfigError` listing every error.
    """
    name = str(path) if path is not None else "<config>"
    try:
        source = text if text is not None else Path(path or "").read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{name}: cannot read: {exc.strerror}"]) from None
    try:
        data = yaml.load(source, Loader=_LineLoader) or {}  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise ConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1: the file must be a mapping of settings"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if isinstance(p, int | str)]
            line = _line_of(data, loc)
            key = ".".join(str(p) for p in loc) or "(top)"
            errors.append(f"{name}:{line or 1}: {key}: {err['msg']}")
        raise ConfigError(errors) from None
