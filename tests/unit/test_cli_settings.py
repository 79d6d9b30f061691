"""Settings a lab gives the CLIs: numbers, per-engine flags, output files, .env and compose files as Compose
reads them, INI inventory booleans as Ansible reads them, TLS trust. Each bad value: one ConfigError line."""

from __future__ import annotations

import argparse
import json
import os
import re
import ssl
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from healthchecks.check import Check, Report, junit_xml, prometheus_text
from healthchecks.cli.common import output_file, positive
from healthchecks.cli.endpoint_args import per_engine, resolve_endpoints
from healthchecks.cli.healthcheck import healthcheck_parser
from healthchecks.endpoints.compose import (
    compose_files,
    from_compose,
    normalise_project_name,
    parse_dotenv,
    project_name,
)
from healthchecks.endpoints.inventory import ansible_bool
from healthchecks.endpoints.url import Endpoint, parse_endpoint, with_defaults
from healthchecks.errors import ConfigError
from healthchecks.protocols import read_api_key, tls_context

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


# -- numbers (item 8) ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "text", "msg"), [
    (float, "nan", "is not a number"), (float, "NaN", "is not a number"), (float, "inf", "must be a finite"),
    (float, "-inf", "must be a finite"), (float, "1e400", "must be a finite"), (float, "0", "greater than 0"),
    (int, "1.5", "not a whole number"), (int, "inf", "finite"), (int, "x", "is not a number"),
])
def test_bad_numbers(kind: type, text: str, msg: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=msg):
        positive(kind)(text)


def test_good_numbers() -> None:
    assert positive(int)("1e3") == 1000 and isinstance(positive(int)("1e3"), int)
    assert positive(int)("1000.0") == 1000
    assert positive(float)(" 2.5 ") == 2.5
    assert positive(float, finite=False)("inf") == float("inf")  # a request rate: all at once
    with pytest.raises(argparse.ArgumentTypeError):
        positive(float, finite=False)("nan")


def _args(*argv: str) -> argparse.Namespace:
    return healthcheck_parser().parse_args(list(argv))


@pytest.mark.parametrize(("argv", "msg"), [
    (["--group", "gpu"], "--group needs --inventory"),
    (["--host", "h1"], "--host needs --inventory"),
    (["vllm=http://h:1", "--model", "ollama=x"], "no ollama endpoint to apply it to"),
    (["vllm=http://h:1", "--model", "tgi=x"], "unknown engine 'tgi'"),
    (["vllm=http://h:1", "--model", "vllm="], "empty value"),
    (["vllm=http://h:1", "--model", "vllm=a", "--model", "vllm=b"], "given twice for vllm"),
    (["vllm=http://h:1", "--ca-bundle", "/nonexistent.pem"], "--ca-bundle /nonexistent.pem: no such file"),
])
def test_settings_refused_before_any_request(argv: list[str], msg: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(msg)):
        resolve_endpoints(_args(*argv))


def test_per_engine_values_win_and_bare_values_apply_everywhere(tmp_path: Path) -> None:
    vkey, okey = tmp_path / "vllm_key", tmp_path / "ollama_key"
    vkey.write_text("sk-v\n")
    okey.write_text("sk-o\n")
    eps = resolve_endpoints(_args("vllm=http://h:8000", "ollama=http://h:11434", "llamacpp=http://h:8080",
                                  "http://h:9", "--model", "base", "--model", "vllm=big", "--api-key-file",
                                  f"vllm={vkey}"))
    by = {e.label: e for e in eps}
    assert (by["vllm@h:8000"].model, by["vllm@h:8000"].api_key_file) == ("big", str(vkey))
    assert (by["ollama@h:11434"].model, by["ollama@h:11434"].api_key_file) == ("base", None)
    assert by["llamacpp@h:8080"].model == "base"
    bare = by["?@h:9"]
    assert bare.model == "base" and bare.api_key_file is None
    # once detected, a bare URL takes its engine's own values and names the engine in its label (item 9)
    detected = bare.as_engine("vllm")
    assert (detected.model, detected.api_key_file, detected.label) == ("big", str(vkey), "vllm@h:9")
    assert bare.as_engine("ollama").label == "ollama@h:9"
    # a bare key file keeps meaning every endpoint
    eps = resolve_endpoints(_args("vllm=http://h:8000", "ollama=http://h:11434", "--api-key-file", str(okey)))
    assert {e.api_key_file for e in eps} == {str(okey)}


def test_per_engine_parser_reads_paths_with_equals(tmp_path: Path) -> None:
    odd = tmp_path / "key=1"
    odd.write_text("k")
    assert per_engine("--api-key-file", [str(odd)]) == {None: str(odd)}
    assert per_engine("--model", ["hf.co/org/model:Q4_K_M"]) == {None: "hf.co/org/model:Q4_K_M"}
    assert per_engine("--model", ["VLLM=x"]) == {"vllm": "x"}


def test_with_defaults_keeps_discovered_values_unless_told() -> None:
    ep = Endpoint(engine="vllm", url="http://h:1", model="discovered", api_key_file="/k")
    assert with_defaults([ep], {}, {})[0].model == "discovered"
    assert with_defaults([ep], {None: "bare"}, {})[0].model == "bare"
    assert with_defaults([ep], {None: "bare", "vllm": "own"}, {})[0].model == "own"


@pytest.mark.parametrize("content", ["two words\n", "caf\xe9-key", "line1\nline2"])
def test_api_key_files_that_no_header_can_carry(tmp_path: Path, content: str) -> None:
    f = tmp_path / "key"
    f.write_text(content)
    with pytest.raises(ConfigError, match="does not hold one key") as exc:
        read_api_key(str(f))
    assert content.strip() not in exc.value.reason
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_api_key(str(f))


# -- output files ----------------------------------------------------------------------------------------
def test_output_paths_checked_before_the_run(tmp_path: Path) -> None:
    output_file("--junit", str(tmp_path / "r.xml"))
    with pytest.raises(ConfigError, match="does not exist"):
        output_file("--junit", str(tmp_path / "missing" / "r.xml"))
    with pytest.raises(ConfigError, match="is a directory"):
        output_file("--prometheus", str(tmp_path))


def _reports() -> list[Report]:
    ok = Report("vllm", "vllm", "http://h:8000", "m", version="vLLM 0.32.0",
                checks=[Check("liveness", "pass", 1.5, "GET /health 200"), Check("auth", "skip", None, "no key")])
    bad = Report('we"ird\\name', "ollama", "http://h:11434",
                 checks=[Check("completion", "fail", 20.0, 'HTTP 404: model "x" not found'),
                         Check("gpu_residency", "warn", 2.0, "partial GPU offload")])
    return [ok, bad]


def test_junit_one_testcase_per_endpoint_and_check() -> None:
    root = ET.fromstring(junit_xml(_reports()))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "1"
    assert suite.get("skipped") == "1"
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    assert cases[('we"ird\\name', "completion")].find("failure").get("message").startswith("HTTP 404")  # type: ignore[union-attr]
    assert cases[("vllm", "auth")].find("skipped") is not None


def test_prometheus_textfile_format() -> None:
    text = prometheus_text(_reports(), now=1700000000.0)
    series = [line for line in text.splitlines() if not line.startswith("#")]
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*\{([a-z_]+="(?:[^"\\\n]|\\.)*",?)*\} -?[0-9.e+-]+$|'
                        r'^[a-zA-Z_:][a-zA-Z0-9_:]* -?[0-9.e+-]+$')
    assert all(sample.match(s) for s in series), series
    assert 'gik_healthcheck_up{endpoint="vllm",engine="vllm",url="http://h:8000",check="liveness"} 1' in series
    assert any(s.startswith('gik_healthcheck_up{endpoint="we\\"ird\\\\name"') and s.endswith(" 0") for s in series)
    assert not any('check="auth"' in s and s.startswith("gik_healthcheck_up") for s in series)  # skipped
    assert 'gik_healthcheck_latency_seconds{endpoint="vllm",engine="vllm",url="http://h:8000",check="liveness"}' \
        ' 0.001500' in series
    assert any('version="vLLM 0.32.0"' in s for s in series)
    assert "gik_healthcheck_last_run_timestamp_seconds 1700000000.000" in series
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(helps) == len(set(helps))


# -- .env as Compose reads it (item 6) -------------------------------------------------------------------
@pytest.mark.parametrize(("text", "want"), [
    ('VLLM_PORT="8001" # lab port', {"VLLM_PORT": "8001"}),
    ("A='x\\ny' # c", {"A": "x\\ny"}),
    ("A=a#b", {"A": "a#b"}),
    ("A=   # comment", {"A": "# comment"}),
    ('A="a\\nb\\tc\\$d\\\\e\\"f"', {"A": 'a\nb\tc$d\\e"f'}),
    ("F: yaml", {"F": "yaml"}),
    ("export G=exp", {"G": "exp"}),
    ("A=1\nH=${A}-${Z:-d${A}}", {"A": "1", "H": "1-d1"}),
    ("I='$A'", {"I": "$A"}),
    ('K="multi\nline"', {"K": "multi\nline"}),
    ("L=trail   ", {"L": "trail"}),
    ("\ufeffA=bom\r\nB=crlf\r\n", {"A": "bom", "B": "crlf"}),
    ("A=price$5", {"A": "price$5"}),
    ("A='it\\'s'", {"A": "it's"}),
    ('B="x"y=1', {"B": "x", "y": "1"}),
])
def test_dotenv_like_compose(text: str, want: dict[str, str]) -> None:
    assert parse_dotenv(text, {}) == want


def test_dotenv_environment_first_and_inheritance() -> None:
    assert parse_dotenv("A=file\nB=${A}", {"A": "proc"}) == {"A": "file", "B": "proc"}
    assert parse_dotenv("A\nB=2", {"A": "fromenv"}) == {"A": "fromenv", "B": "2"}
    assert parse_dotenv("A\n", {}) == {}


@pytest.mark.parametrize(("text", "msg"), [
    ("A B=1", r"\.env:1: key 'A B' cannot contain a space"),
    ('A=1\nB="unterminated\n', r"\.env:2: unterminated quoted value"),
    ("A=${", r"unclosed interpolation"),
    ("A=${B:?need B}", r"required variable B is not set: need B"),
    ("A/B=1", r"\.env:1: unexpected character '/'"),
])
def test_dotenv_errors(text: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        parse_dotenv(text, {}, ".env")


def _project(tmp_path: Path, name: str, compose: str, env: str | bytes = "") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "docker-compose.yml").write_text(compose)
    if env:
        (d / ".env").write_bytes(env if isinstance(env, bytes) else env.encode())
    return d


SERVICE = """services:
  vllm:
    image: x
    labels:
      io.gpu-inference-kit.engine: vllm
      io.gpu-inference-kit.port: "${PORT_LABEL:-8000}"
    ports: ["127.0.0.1:${VLLM_PORT:-8000}:8000"]
"""


def test_compose_quotes_comments_and_bad_values(tmp_path: Path) -> None:
    d = _project(tmp_path, "My_Lab.Stack", SERVICE, 'VLLM_PORT="8001" # lab port\n')
    (ep,) = from_compose(d, {})
    assert ep.url == "http://127.0.0.1:8001"
    assert ep.meta["compose_project"] == "my_labstack"
    with pytest.raises(ConfigError, match=r"service vllm: port '127.0.0.1:\$\{VLLM_PORT:-8000\}:8000': '80a' is "
                                          r"not a port number"):
        from_compose(d, {"VLLM_PORT": "80a"})
    with pytest.raises(ConfigError, match=r"label io.gpu-inference-kit.port: 'eighty' is not a port number"):
        from_compose(d, {"PORT_LABEL": "eighty"})
    (d / ".env").write_bytes(b"# caf\xe9 lab\nVLLM_PORT=8002\n")
    assert from_compose(d, {})[0].port == 8002  # Latin-1 in a comment: Compose reads on, so do we
    (d / "docker-compose.yml").write_bytes(SERVICE.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        from_compose(d, {})


def test_project_names_as_compose_normalises_them(tmp_path: Path) -> None:
    assert normalise_project_name("My_Proj.x") == "my_projx"
    assert normalise_project_name("_-Lead") == "lead"
    assert normalise_project_name("ÄÖ-ok") == "ok"
    assert project_name(tmp_path, {}, "Named-p") == "named-p"
    assert project_name(tmp_path, {"COMPOSE_PROJECT_NAME": "lab1"}, "named") == "lab1"
    with pytest.raises(ConfigError, match=r"COMPOSE_PROJECT_NAME='Bad\.Name' is not a valid project name"):
        project_name(tmp_path, {"COMPOSE_PROJECT_NAME": "Bad.Name"})


def test_every_compose_file_name_and_the_override(tmp_path: Path) -> None:
    for name in ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        (d / name).write_text(SERVICE)
        assert compose_files(d, {}) == [d / name]
        assert from_compose(d, {})[0].port == 8000
    d = tmp_path / "both"
    d.mkdir()
    for name in ("docker-compose.yml", "compose.yml", "docker-compose.override.yml"):
        (d / name).write_text(SERVICE)
    assert compose_files(d, {}) == [d / "compose.yml", d / "docker-compose.override.yml"]


def test_preflight_takes_docker_compose_yml(tmp_path: Path) -> None:
    from healthchecks.preflight import preflight

    d = _project(tmp_path, "lab", SERVICE, "VLLM_PORT='80a'\n")
    problems = preflight(d, ["vllm"], {})
    assert "VLLM_PORT='80a' is not a port number (1-65535)" in problems


# -- inventory booleans (item 7) -------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "want"), [
    ("false", False), ("False", False), ("no", False), ("off", False), ("0", False), ("n", False), (0, False),
    (False, False), ("true", True), ("YES", True), ("on", True), ("1", True), (1, True), (True, True),
    # ansible.module_utils.parsing.convert_bool.boolean (role argument_specs, module options) also reads these
    ("y", True), ("T", True), (" yes ", True), (1.0, True), ("f", False), ("N", False), (0.0, False),
])
def test_inventory_booleans_as_ansible_reads_them(value: object, want: bool) -> None:
    assert ansible_bool(value, "h: inference_stack_gpu") is want


def test_inventory_boolean_that_is_none() -> None:
    with pytest.raises(ConfigError, match=r"h: inference_stack_gpu must be a boolean .* not 'maybe'"):
        ansible_bool("maybe", "h: inference_stack_gpu")


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, 0.5, None, [], "yes please"])
def test_inventory_booleans_ansible_refuses(value: object) -> None:
    with pytest.raises(ConfigError, match="must be a boolean"):
        ansible_bool(value, "h: inference_stack_gpu")


# -- TLS trust (item 4) ----------------------------------------------------------------------------------
def test_tls_contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tls_context.cache_clear()
    system = tls_context(None, insecure=False)
    assert system.verify_mode == ssl.CERT_REQUIRED and system.check_hostname
    assert system.cert_store_stats()["x509_ca"] > 0  # the system store (or certifi when it is empty)
    assert tls_context(None, insecure=True).verify_mode == ssl.CERT_NONE
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="is not a PEM certificate bundle"):
        tls_context(str(bad), insecure=False)
    assert tls_context(None, insecure=False) is system  # one context per run


def test_parse_endpoint_label_before_detection() -> None:
    assert parse_endpoint("http://h:9").label == "?@h:9"
    assert json.dumps(parse_endpoint("vllm=http://h:9").label) == '"vllm@h:9"'


def test_output_written_whole_keeps_mode_and_follows_links(tmp_path: Path) -> None:
    """One writer for every output file (healthcheck's --junit/--prometheus, gpu-report's --bench-json): through
    a temporary file renamed over the target, the target's mode kept, a symlink's target replaced, no temporary
    file left; a folder that refuses the temporary file gets the file rewritten in place only when asked."""
    from healthchecks.cli.common import write_whole

    target = tmp_path / "r.prom"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.prom"
    link.symlink_to(target)
    write_whole(str(link), "new\n")
    assert target.read_text() == "new\n" and link.is_symlink() and (target.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.prom", "r.prom"]
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "b.json").write_text("{}")
    folder.chmod(0o500)
    try:
        if os.geteuid() != 0:  # root writes anywhere: the folder cannot refuse
            with pytest.raises(OSError):
                write_whole(folder / "b.json", "[]")
            write_whole(folder / "b.json", "[]", in_place_fallback=True)
            assert (folder / "b.json").read_text() == "[]"
    finally:
        folder.chmod(0o700)
