"""Property tests: any .env content (lines a person could type, and arbitrary bytes) is read as Compose reads
it or refused with one ConfigError line naming the file and line; never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthchecks.endpoints.compose import parse_dotenv, read_dotenv
from healthchecks.errors import ConfigError

pytestmark = pytest.mark.unit
SETTINGS = settings(max_examples=300, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True)
pieces = st.sampled_from(["'", '"', "#", " #", "\\", "$", "${", "}", ":-", ":?", "=", ":", " ", "\t", "\n", "\r\n",
                          "${A}", "$A", "${A:-x}", "\\n", "\\$", "\\\"", "export ", "\ufeff", "\x00", "é"])
values = st.lists(pieces | st.text(max_size=6), max_size=8).map("".join)
lines = st.one_of(
    st.tuples(st.sampled_from(["", "export ", "  "]), keys, st.sampled_from(["=", ": ", " = "]), values)
    .map("".join),
    st.sampled_from(["# comment", "", "   ", "KEY", "export", "=x", "A B=1"]),
    st.text(max_size=30),
)


def _check(text: str) -> None:
    try:
        env = parse_dotenv(text, {"A": "a"}, ".env")
    except ConfigError as exc:
        assert exc.reason.startswith(".env") and "\n" not in exc.reason[:200].split(": ", 1)[0]
        return
    assert all(isinstance(k, str) and isinstance(v, str) and k for k, v in env.items())


@SETTINGS
@given(st.lists(lines, max_size=8).map("\n".join))
def test_any_typed_lines(text: str) -> None:
    _check(text)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_from_disk(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / ".env"
    f.write_bytes(data)
    try:
        env = read_dotenv(f, {})
    except ConfigError as exc:
        assert str(f) in exc.reason
        return
    assert all(isinstance(v, str) for v in env.values())
