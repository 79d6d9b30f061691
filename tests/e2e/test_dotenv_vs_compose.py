"""The kit reads a compose project as Docker Compose does: the same .env values (quotes, comments, escapes,
interpolation, errors), the same project name, the same compose file. Compared with `docker compose config`
on the same files (no daemon, no images: ~0.1 s a file)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthchecks.endpoints.compose import from_compose, load_compose, parse_dotenv, project_name
from healthchecks.errors import ConfigError

pytestmark = pytest.mark.e2e
KEYS = ("A", "B", "C", "D", "E")
COMPOSE = "services:\n  s:\n    image: x\n    environment:\n" + "".join(
    f'      {k}: "${{{k}-<unset>}}"\n' for k in KEYS)
CLEAN_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
             "DOCKER_CONFIG": os.environ.get("DOCKER_CONFIG", str(Path.home() / ".docker"))}


@pytest.fixture(scope="module", autouse=True)
def _compose_v2() -> None:
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed: run tests/setup.sh", pytrace=False)
    r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"docker compose v2 is missing: {r.stderr.strip()}", pytrace=False)


def compose_config(project: Path, environ: dict[str, str] | None = None) -> tuple[dict | None, str]:
    r = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=project, capture_output=True,
                       text=True, env={**CLEAN_ENV, **(environ or {})}, timeout=60)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return json.loads(r.stdout), ""


def compose_values(project: Path, environ: dict[str, str] | None = None) -> tuple[dict[str, str] | None, str]:
    doc, err = compose_config(project, environ)
    if doc is None:
        return None, err
    env = doc["services"]["s"]["environment"]
    # config re-escapes a literal dollar as $$ for compose; "<unset>" is our marker for a key .env did not set
    return {k: v.replace("$$", "$") for k, v in env.items() if v != "<unset>"}, ""


def ours(text: str, environ: dict[str, str] | None = None) -> dict[str, str] | None:
    try:
        env = parse_dotenv(text, environ or {}, ".env")
    except ConfigError:
        return None
    return {k: v for k, v in env.items() if k in KEYS}


def project(tmp_path: Path, text: str | bytes) -> Path:
    d = tmp_path / "p"
    d.mkdir(exist_ok=True)
    (d / "compose.yaml").write_text(COMPOSE)
    (d / ".env").write_bytes(text.encode() if isinstance(text, str) else text)
    return d


CASES = [
    'A="8001" # lab port', "A='x\\ny' # c", "A=a#b", "A=   # comment", 'A="a\\nb\\tc\\$d\\\\e\\"f"', "A: yaml",
    "export A=exp", "A=1\nB=${A}-${Z:-d${A}}", "A='$B'\nB=1", 'A=x"y', 'A="multi\nline"\nB=2', "A=trail   \t",
    'A="q"junk', "A=price$5", "A=a$", "\ufeffA=bom\r\nB=crlf\r\n", "A=1\nA=2", "A B=1", 'A="unterminated\n',
    "=x\nB=1", "A.b-c=1\nB=2", "A=${B:?need B}", 'A="a\\$b"\nB=a\\$b\nC=\\n', "A=$$x\nB=\"$$x\"",
    " A = 1 \n\tB=\t2", "A='it\\'s'", 'A="x" # c\nB="x"y=1', "A=${", "A=${B:-${C:-deep}}\nC=set",
    "A=${B-def}\nB=", "A=${B:+alt}\nB=1", "A=\"\\0101\"", "A=\"\\o101\"", 'A="\\0"\nB="\\01"\nC="\\012"',
    'A="\\0777"\nB="\\01012"', 'A="\\u00e9"', "A='a'b'c'",
    "#A=1\nB=2 #x", "A=1 #c\nB='#x'", "export\tA=1", "A=\"line\\\nnext\"", "A=${B}${C}\nB=b\nC=c",
]


@pytest.mark.parametrize("text", CASES)
def test_dotenv_cases_match_compose(tmp_path: Path, text: str) -> None:
    want, err = compose_values(project(tmp_path, text))
    got = ours(text)
    assert got == want, (text, err)


def test_process_environment_and_non_utf8_match_compose(tmp_path: Path) -> None:
    """The process environment is looked up first (B) and fills a bare key (C); the service then sees the
    process's A, so only B and C show what the .env reader made of them."""
    text = "A=file\nB=${A}\nC\n"
    environ = {"A": "proc", "C": "inh"}
    want, err = compose_values(project(tmp_path, text), environ)
    got = ours(text, environ)
    assert want is not None and got is not None, err
    assert (got["B"], got["C"]) == (want["B"], want["C"]) == ("proc", "inh")
    raw = b"# caf\xe9\nA=caf\xe9\nB=ok\n"
    from healthchecks.endpoints.compose import read_dotenv

    d = project(tmp_path, raw)
    assert {k: v for k, v in read_dotenv(d / ".env", {}).items() if k in KEYS} == compose_values(d)[0]


lines = st.lists(st.sampled_from([
    "A=", "B=", "C=", "export D=", "E: ", "A", "# c", "", "'", '"', " #", "#", "\\", "\\n", "\\$", "$A", "${B}",
    "${C:-d}", "${D-x}", "${E:+y}", "$$", "x", " ", "\t", "=", "é", "\n", "\r\n",
]), max_size=10).map("".join)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines)
def test_random_dotenv_matches_compose(tmp_path: Path, text: str) -> None:
    """Differential: the same file through both readers (values, or an error in both)."""
    want, err = compose_values(project(tmp_path, text))
    assert ours(text) == want, (text, err)


@pytest.mark.parametrize(("dirname", "files", "declared"), [
    ("My_Lab.Stack", ["compose.yaml"], None),
    ("_-Lead", ["compose.yml"], None),
    ("GPU-lab", ["docker-compose.yml"], None),
    ("gpu lab", ["docker-compose.yaml"], None),
    ("x", ["compose.yml", "docker-compose.yml", "compose.override.yml"], None),
    ("y", ["docker-compose.yml", "docker-compose.override.yaml"], "Named-${NAME_SUFFIX:-p}"),
])
def test_project_name_and_files_match_compose(tmp_path: Path, dirname: str, files: list[str],
                                              declared: str | None) -> None:
    d = tmp_path / dirname
    d.mkdir()
    svc = ("services:\n  vllm:\n    image: img-{i}\n    labels:\n      io.gpu-inference-kit.engine: vllm\n"
           "    ports: ['127.0.0.1:{port}:8000']\n")
    for i, name in enumerate(files):
        (d / name).write_text((f"name: {declared}\n" if declared and i == 0 else "") + svc.format(i=i, port=18000 + i))
    doc, err = compose_config(d)
    assert doc is not None, err
    (ep,) = from_compose(d, {})
    assert ep.meta["compose_project"] == doc["name"]
    assert ep.port == int(doc["services"]["vllm"]["ports"][0]["published"])
    _, _, merged = load_compose(d, {})
    assert merged["services"]["vllm"]["image"] == doc["services"]["vllm"]["image"]
    # COMPOSE_PROJECT_NAME wins, and an invalid one is refused by both
    assert project_name(d, {"COMPOSE_PROJECT_NAME": "lab-7"}) == compose_config(d, {"COMPOSE_PROJECT_NAME": "lab-7"})[
        0]["name"]  # type: ignore[index]
    bad, err = compose_config(d, {"COMPOSE_PROJECT_NAME": "Bad.Name"})
    assert bad is None and "invalid project name" in err
    with pytest.raises(ConfigError, match="is not a valid project name"):
        project_name(d, {"COMPOSE_PROJECT_NAME": "Bad.Name"})
