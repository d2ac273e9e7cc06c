"""Naming the line of a key path in a TOML file, and the config loader under random and
mutated input: it names problems, it never crashes with a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redis_forwarder.config import load_config
from redis_forwarder.errors import ConfigError
from redis_forwarder.toml_lines import line_of
from tests.unit.test_config import EXAMPLE

TEXT = """# a comment
[source]
kind = "sentinel"
addresses = ["127.0.0.1:26400"]

[targets.archive]
kind = "standalone"

[[route]]
name = "a"
from = { channels = ["x"] }

[[route]]
name = "b"
to = { stream = "s" }
description = \"\"\"
[[route]]
name = "not a table"
\"\"\"
node.metrics = "x"
"""


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        (("source", "kind"), 3),
        (("source",), 2),
        (("targets", "archive", "addresses"), 6),  # missing key: its table's line
        (("route", 0, "from", "channels", 0), 11),  # inside an inline table: its key
        (("route", 1), 13),
        (("route", 1, "to", "stream"), 15),
        (("route", 1, "node", "metrics"), 20),  # dotted key, after a multi-line string
        (("nowhere",), None),
    ],
)
def test_the_line_of_a_key_path(loc: tuple[str | int, ...], line: int | None) -> None:
    assert line_of(TEXT, loc) == line


def test_config_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "forwarder.toml"
    path.write_text(EXAMPLE.replace("mirror:{channel}", "mirror:{chanel}"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = next(n for n, text in enumerate(EXAMPLE.splitlines(), 1) if "mirror:" in text)
    assert f"route[0].to (line {line}): " in str(caught.value)


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "forwarder.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"config {path} is not valid:")
        assert "Traceback" not in str(exc)


lines = EXAMPLE.splitlines()
toml_values = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False).map(repr),
    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
    st.sampled_from(["true", "[]", "{}", '["a", 1]', "{ x = 1 }", "[[1]]", '"{0..99999999}"']),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(lines) - 1), st.sampled_from(["drop", "value", "dup"]), toml_values
        ),
        max_size=4,
    )
)
def test_mutated_configs_fail_with_named_problems_only(
    tmp_path: Path, edits: list[tuple[int, str, str]]
) -> None:
    mutated = list(lines)
    for index, how, value in edits:
        index %= len(mutated)
        if how == "drop":
            del mutated[index]
        elif how == "dup":
            mutated.insert(index, mutated[index])
        elif "=" in mutated[index]:
            mutated[index] = mutated[index].split("=", 1)[0] + "= " + value
        if not mutated:
            break
    _load(tmp_path, "\n".join(mutated))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_random_text_fails_with_named_problems_only(tmp_path: Path, text: str) -> None:
    _load(tmp_path, text)
