"""Parsing YAML within limits: file size, nesting depth, and values counted with aliases expanded.

PyYAML's safe loader constructs no Python objects beyond plain data, but it accepts a 50 MB scalar, nests
lists until Python's recursion limit, and lets nine lines of aliases stand for 9**9 values ("billion
laughs"), which is harmless until something walks or prints the value. Here the file size is checked
before reading, depth while composing, and the number of values with every alias counted as the copy
it stands for (memoised over the node graph, so counting a bomb is as cheap as the file) before
anything is constructed. Recursive aliases are refused.
"""

from __future__ import annotations

import os

import yaml

from .limits import YAML_MAX_BYTES, YAML_MAX_DEPTH, YAML_MAX_NODES, setting, size


class YAMLLimitError(ValueError):
    """A document beyond a limit: ``problem`` says which, ``hint`` names the variable that raises it."""

    def __init__(self, problem: str, hint: str):
        super().__init__(problem)
        self.problem, self.hint = problem, hint


def check_size(path: str) -> None:
    """Refuse a file above ``FEATBENCH_YAML_MAX_BYTES`` before reading it."""
    limit = setting(YAML_MAX_BYTES)
    n = os.path.getsize(path)
    if n > limit:
        raise YAMLLimitError(
            f"{path} is {size(n)}, over the limit of {size(limit)} for a YAML file",
            f"is it the right file? raise {YAML_MAX_BYTES[0]}=BYTES if it is",
        )


class _LimitedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer stops beyond ``max_depth`` levels of nesting."""

    max_depth = 64

    def compose_node(self, parent, index):
        self._depth = getattr(self, "_depth", 0) + 1
        if self._depth > self.max_depth:
            mark = self.peek_event().start_mark
            raise YAMLLimitError(
                f"values nested deeper than {self.max_depth} levels (line {mark.line + 1}, column {mark.column + 1})",
                f"flatten the file, or raise {YAML_MAX_DEPTH[0]}",
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def expanded_nodes(node: yaml.Node, limit: int, max_depth: int) -> int:
    """How many values ``node`` stands for once every alias is expanded; stops counting above ``limit``.
    Refuses values nested deeper than ``max_depth`` once expanded (a chain of aliases nests too)."""
    counted: dict[int, tuple[int, int]] = {}  # id -> (values, height)
    open_: set[int] = set()

    def too_deep() -> YAMLLimitError:
        return YAMLLimitError(
            f"its aliases nest values deeper than {max_depth} levels",
            f"write the values out, or raise {YAML_MAX_DEPTH[0]}",
        )

    def count(n: yaml.Node, depth: int) -> tuple[int, int]:
        if id(n) in counted:
            if depth + counted[id(n)][1] - 1 > max_depth:
                raise too_deep()
            return counted[id(n)]
        if depth > max_depth:
            raise too_deep()
        if id(n) in open_:
            raise YAMLLimitError("a recursive alias (a value that contains itself)", "write the value out")
        open_.add(id(n))
        total, height = 1, 1
        if isinstance(n, yaml.SequenceNode):
            children = n.value
        elif isinstance(n, yaml.MappingNode):
            children = [c for pair in n.value for c in pair]
        else:
            children = []
        for child in children:
            values, h = count(child, depth + 1)
            total, height = total + values, max(height, h + 1)
            if total > limit:
                break
        open_.discard(id(n))
        counted[id(n)] = (total, height)
        return total, height

    return count(node, 1)[0]


def load(path: str):
    """The data in YAML file ``path`` (plain Python values), or :class:`YAMLLimitError`; other problems
    raise what ``yaml.safe_load`` and ``open`` raise."""
    check_size(path)
    max_nodes, max_depth = int(setting(YAML_MAX_NODES)), int(setting(YAML_MAX_DEPTH))
    with open(path, encoding="utf-8") as f:
        loader = type("_Loader", (_LimitedLoader,), {"max_depth": max_depth})(f)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if expanded_nodes(node, max_nodes, max_depth) > max_nodes:
                raise YAMLLimitError(
                    f'its aliases expand to more than {max_nodes:,} nodes (a "billion laughs" document?)',
                    f"write the values out, or raise {YAML_MAX_NODES[0]}",
                )
            try:
                return loader.construct_document(node)
            except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit conversion limit
                raise YAMLLimitError(
                    f"a value cannot be read ({str(exc).split(';')[0][:120]})", "fix that value"
                ) from None
        finally:
            loader.dispose()
