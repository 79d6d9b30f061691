from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from healthchecks.endpoints.compose import from_compose, interpolate, read_dotenv
from healthchecks.endpoints.url import parse_endpoint
from healthchecks.errors import ConfigError

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_parse_endpoint_forms() -> None:
    e = parse_endpoint("vllm=http://gpu01:8000/v1/")
    assert (e.engine, e.url, e.port, e.host) == ("vllm", "http://gpu01:8000", 8000, "gpu01")
    assert parse_endpoint("http://h:11434").engine is None
    assert parse_endpoint("OLLAMA=http://h:11434").engine == "ollama"
    assert parse_endpoint("openai=https://router.example/v1").port == 443


@pytest.mark.parametrize(("spec", "msg"), [
    ("vllm=h:8000", "no scheme"), ("x=http://h", "unknown engine 'x'"), ("http://h:notaport", "malformed"),
    ("gopher://h", "scheme must be http or https"), ("http://:80", "has no host"), ("http://h:0", "port 0"),
])
def test_parse_endpoint_errors(spec: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        parse_endpoint(spec)


@pytest.mark.parametrize(("text", "env", "out"), [
    ("${A}", {"A": "1"}, "1"), ("$A-x", {"A": "1"}, "1-x"), ("${A:-d}", {}, "d"), ("${A:-d}", {"A": ""}, "d"),
    ("${A-d}", {"A": ""}, ""), ("${A:+r}", {"A": "1"}, "r"), ("${A:+r}", {}, ""), ("$$A", {"A": "1"}, "$A"),
    ("${A:-${B:-z}}", {}, "z"), ("a${A}b", {"A": "-"}, "a-b"),
])
def test_interpolation(text: str, env: dict[str, str], out: str) -> None:
    assert interpolate(text, env) == out


def test_required_variable() -> None:
    with pytest.raises(ConfigError, match="required variable TOKEN_DIR is not set: set it"):
        interpolate("${TOKEN_DIR:?set it}", {})


def test_dotenv(tmp_path: Path) -> None:
    f = tmp_path / ".env"
    f.write_text("# c\nA=1\nexport B='two words'\nC=\"q\"\nD=v # comment\n\n")
    assert read_dotenv(f) == {"A": "1", "B": "two words", "C": "q", "D": "v"}
    f.write_text("A=1\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2: key 'this is not a setting' cannot contain a space"):
        read_dotenv(f)


def test_from_compose_uses_labels_ports_env_and_profiles(tmp_path: Path) -> None:
    # the repository's compose files without the .env a user (or `make demo`) may have written beside them
    project = tmp_path / "compose"
    project.mkdir()
    for f in (ROOT / "compose").glob("compose*.yaml"):
        shutil.copy(f, project)
    env = {"COMPOSE_FILE": "compose.yaml:compose.gpu.yaml", "VLLM_PORT": "18000", "BIND_ADDRESS": "0.0.0.0",
           "VLLM_SERVED_MODEL_NAME": "llama-8b"}
    eps = {e.name: e for e in from_compose(project, env)}
    assert set(eps) == {"vllm", "llamacpp", "ollama"}  # sglang: inactive profile
    assert eps["vllm"].url == "http://127.0.0.1:18000" and eps["vllm"].model == "llama-8b"
    assert eps["vllm"].expect_gpu is True and eps["ollama"].port == 11434
    assert eps["vllm"].meta["compose_project"] == "compose"
    cpu = {e.name: e for e in from_compose(project, {"COMPOSE_FILE": "compose.yaml:compose.cpu.yaml",
                                                              "COMPOSE_PROFILES": "sglang"})}
    assert cpu["llamacpp"].expect_gpu is False and "sglang" in cpu


def test_from_compose_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        from_compose(tmp_path / "nope.yaml", {})
    bad = tmp_path / "compose.yaml"
    bad.write_text("services: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        from_compose(bad, {})
    bad.write_text("services:\n  web:\n    image: nginx\n")
    with pytest.raises(ConfigError, match="no published services labelled"):
        from_compose(bad, {})


@pytest.mark.parametrize("published", ["\u00b2", "\uff11\uff18\uff10\uff10\uff10", "8\uff1000"])
def test_compose_ports_in_digits_int_refuses(tmp_path: Path, published: str) -> None:
    """str.isdigit accepts "²" and full-width digits, which Compose and int() refuse: a ConfigError, not a crash."""
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  vllm:\n    image: x\n    labels:\n      io.gpu-inference-kit.engine: vllm\n"
                 f"    ports:\n      - \"127.0.0.1:{published}:8000\"\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        from_compose(f, {})
