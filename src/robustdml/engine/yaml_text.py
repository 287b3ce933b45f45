"""YAML text as Python values, read the way a person writing a config means it.

PyYAML's safe loader with two differences: ``1e-3`` is a number (YAML 1.1 reads floats without a dot
as text), and a key set twice in one mapping is an error naming the key and both lines (PyYAML keeps
the last one silently, so a config file with ``lr`` twice trained with whichever came last).
"""

from __future__ import annotations

import re
from typing import Any, Dict

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping sets one key twice (PyYAML would keep the last silently)."""

    def __init__(self, key: Any, first_line: int, second_line: int):
        super().__init__(f"{key!r} is set twice (lines {first_line} and {second_line})")
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-3`` is a number (YAML 1.1 reads floats without a dot as text) and a key
    set twice in one mapping is an error (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: Dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges may be overridden: only keys written twice are an error
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKeyError(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML reports it itself
                    continue
        return super().construct_mapping(node, deep)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """YAML text as Python values, with ``1e-3`` read as a number."""
    return yaml.load(text, Loader=_YamlLoader)
