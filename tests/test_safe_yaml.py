"""featbench.safe_yaml: the memoised count of values with aliases expanded equals a plain walk of the
constructed data, and documents within the limits load exactly as yaml.safe_load loads them."""

from __future__ import annotations

import pytest
import yaml

from featbench.safe_yaml import YAMLLimitError, expanded_nodes, load

DOCS = [
    "a: 1\nb: [1, 2, {c: 3}]\n",
    "base: &b {lr: [0.5, 1], wd: 0}\nrows: [*b, *b, {x: *b}]\n",
    "a0: &a0 [x, y]\na1: &a1 [*a0, *a0, *a0]\na2: [*a1, *a1]\n",
    "- &s hello\n- *s\n- [*s, *s]\n",
    "",
]


def _walk(value) -> int:
    """Values in constructed data, counting a mapping's keys and values (what the node count counts)."""
    if isinstance(value, dict):
        return 1 + sum(_walk(k) + _walk(v) for k, v in value.items())
    if isinstance(value, list):
        return 1 + sum(_walk(v) for v in value)
    return 1


@pytest.mark.parametrize("text", DOCS)
def test_the_memoised_count_equals_a_plain_walk_and_the_data_equals_safe_load(tmp_path, text):
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    assert load(str(path)) == yaml.safe_load(text)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is not None:
        assert expanded_nodes(node, limit=10**9, max_depth=64) == _walk(yaml.safe_load(text))


def test_limits_can_be_raised(tmp_path, monkeypatch):
    path = tmp_path / "doc.yaml"
    path.write_text(
        "a0: &a0 [1, 2, 3, 4]\na1: &a1 [*a0, *a0, *a0, *a0]\na2: [*a1, *a1, *a1, *a1]\n"
    )  # 1 + 3 + 5 + 21 + 85
    monkeypatch.setenv("FEATBENCH_YAML_MAX_NODES", "114")
    with pytest.raises(YAMLLimitError, match="more than 114 nodes"):
        load(str(path))
    monkeypatch.setenv("FEATBENCH_YAML_MAX_NODES", "115")
    assert load(str(path))["a2"][3][3] == [1, 2, 3, 4]
    path.write_text("a: " + "[" * 10 + "]" * 10 + "\n")
    monkeypatch.setenv("FEATBENCH_YAML_MAX_DEPTH", "5")
    with pytest.raises(YAMLLimitError, match="deeper than 5 levels"):
        load(str(path))
    monkeypatch.setenv("FEATBENCH_YAML_MAX_DEPTH", "12")
    assert load(str(path)) == yaml.safe_load(path.read_text())
