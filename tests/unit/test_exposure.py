"""No engine exposed without authentication (issue 21): the one rule (healthchecks/exposure.py) and compose-preflight
applying it to real .env files through its console script: each exposed keyless engine is one line naming the
setting, exit code 1; keys, loopback or the lab's explicit opt-out pass; no key is ever printed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port

from healthchecks import exposure, stack
from healthchecks.exposure import Binding, Published

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CAT = stack.load()
KEY = "sk-exposure-" + os.urandom(6).hex()


# -- the rule ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST", True), ("0.0.0.0", False), ("::", False), ("", False), ("192.0.2.10", False),
    ("fe80::1%eth0", False), ("gpu01.lab.example", False), ("::ffff:127.0.0.1", False),
])
def test_loopback_is_127_8_and_ipv6_1_and_localhost(address: str, loopback: bool) -> None:
    assert exposure.is_loopback(address) is loopback


def _pub(engine: str, address: str, key: str | None, keyed: bool, gap: str | None = None) -> Published:
    return Published(engine, (Binding(address, "BIND_ADDRESS"),), key, keyed, gap)


def test_the_rule_one_line_per_exposed_engine_without_a_key() -> None:
    engines = [_pub("llamacpp", "0.0.0.0", "LLAMACPP_API_KEY_FILE", False),
               _pub("x", "0.0.0.0", "X_API_KEY_FILE", True),                # keyed, its key guards every route: fine
               _pub("ollama", "0.0.0.0", None, False),                       # cannot take a key
               _pub("vllm", "0.0.0.0", "VLLM_API_KEY_FILE", True, "its key leaves /invocations open"),  # keyed
               _pub("sglang", "127.0.0.1", "X", False)]                      # loopback: fine
    out = exposure.refusals(engines, allow_unauthenticated=False, allow_setting="ALLOW_UNAUTHENTICATED=1")
    assert len(out) == 3, out
    assert out[0].startswith("llamacpp would be published on 0.0.0.0 (BIND_ADDRESS) without an API key: give it "
                             "one (LLAMACPP_API_KEY_FILE)")
    assert out[1].startswith("ollama would be published on 0.0.0.0 (BIND_ADDRESS) but cannot require an API key")
    assert out[2] == ("vllm would be published on 0.0.0.0 (BIND_ADDRESS): its key leaves /invocations open: publish "
                      "it on 127.0.0.1 (the gateway is the way in from the network), or set ALLOW_UNAUTHENTICATED=1 "
                      "to accept an engine anyone on the network can use")
    assert all("ALLOW_UNAUTHENTICATED=1" in line and "\n" not in line for line in out)
    assert exposure.refusals(engines, allow_unauthenticated=True, allow_setting="x") == []


@pytest.mark.parametrize(("port", "host"), [
    ("8000", None), ("8000:8000", ""), ("127.0.0.1:8000:8000", "127.0.0.1"), ("[::1]:8000:8000/tcp", "[::1]"),
    ("${BIND_ADDRESS:-127.0.0.1}:${VLLM_PORT:-8000}:8000", "${BIND_ADDRESS:-127.0.0.1}"),
    ("${A:-::1}:${P:-80}:80", "${A:-::1}"), ("::1:80:80", "::1"),
])
def test_host_part_of_a_short_syntax_port(port: str, host: str | None) -> None:
    assert exposure._host_part(port) == host


def test_bindings_follow_the_compose_ports_lines_whatever_their_syntax() -> None:
    doc = {"services": {"a": {"ports": ["${X_BIND:-127.0.0.1}:1:1", "0.0.0.0:2:2", "3:3", "4",
                                        {"target": 5, "published": 5, "host_ip": "${X_BIND}"},
                                        {"target": 6, "published": 6}, {"target": 7}]}}}
    got = exposure.bindings(doc, {"X_BIND": "10.0.0.1"}, "a", {"X_BIND": "x_bind"})
    assert got == (Binding("10.0.0.1", "x_bind"), Binding("0.0.0.0", "the compose file's ports of a"),
                   Binding("0.0.0.0", "the compose file's ports of a"), Binding("10.0.0.1", "x_bind"),
                   Binding("0.0.0.0", "the compose file's ports of a"))


def test_every_engine_is_published_on_a_catalogued_address_and_one_without_a_key_on_loopback() -> None:
    """The kit's compose.yaml: each engine's port on an address setting of the catalogue; a deployed engine that
    cannot take a key (Ollama) on a setting of its own whose default is loopback, so BIND_ADDRESS=0.0.0.0 (what the
    deployers render) never exposes it."""
    doc = exposure.kit_compose()
    env = {**CAT.env_defaults(), "BIND_ADDRESS": "0.0.0.0"}
    by_env = CAT.by_env()
    keyless = []
    for name in CAT.engines:
        found = exposure.bindings(doc, env, name)
        assert found, f"{name} publishes no port"
        for b in found:
            assert b.setting in by_env and by_env[b.setting].format == "address", (name, b)
        if exposure.key_file_setting(name) is None and CAT.engines[name].deployed:
            keyless.append(name)
            assert all(exposure.is_loopback(b.address) for b in found), (name, found)
            assert all(b.setting != "BIND_ADDRESS" for b in found), (name, found)
    assert keyless, "no engine of the catalogue is without a key (Ollama has none)"


def test_vllm_and_llamacpp_take_a_key_from_a_catalogued_file_compose_mounts() -> None:
    doc = exposure.kit_compose()
    for name in ("vllm", "llamacpp"):
        setting = exposure.key_file_setting(name)
        assert setting is not None and setting.env, name
        secret = next(s for s, v in doc["secrets"].items() if setting.env in str(v.get("file")))
        assert secret in doc["services"][name]["secrets"], name
    assert "--api-key-file /run/secrets/llamacpp_api_key" in doc["services"]["llamacpp"]["command"]


# -- the deployers' settings (Ansible host vars, pyinfra --data) ---------------------------------------------------
ALL_KEYS = [f"hf_secret_{e}_api_key" for e in CAT.engines]
# why a key does not let vLLM be published (healthchecks/stack.yml api_key_open_routes)
GAP = "vLLM's API key does not guard every route (/invocations answers without it)"


def test_ansible_settings_refused_naming_the_variables() -> None:
    out = exposure.ansible_refusals({"inference_stack_bind_address": "0.0.0.0",
                                     "inference_stack_engines": ["vllm", "ollama", "llamacpp"]}, ALL_KEYS, False)
    assert [line.split(" ", 1)[0] for line in out] == ["vllm", "llamacpp"], out  # Ollama stays on loopback
    assert "(inference_stack_bind_address): " + GAP + ": publish it on 127.0.0.1" in out[0]
    assert "(inference_stack_bind_address) without an API key: give it one (vault_llamacpp_api_key)" in out[1]
    assert all("preflight_allow_unauthenticated: true" in line for line in out)


@pytest.mark.parametrize("host", [
    {"vault_vllm_api_key": KEY}, {"hf_secret_vllm_api_key": KEY, "vault_vllm_api_key": ""},
    {"vault_vllm_api_key": KEY, "vault_llamacpp_api_key": KEY},
], ids=["vault", "role-variable", "both-keyed"])
def test_a_keyed_vllm_beyond_loopback_is_refused(host: dict[str, Any]) -> None:
    """vLLM's key guards /v1, /v2, /inference, /cohere only: /invocations answers without it (the catalogue,
    tests/unit/test_vllm_key_guard.py), so a key does not let it be published; a keyed llama.cpp may be."""
    out = exposure.ansible_refusals({"inference_stack_bind_address": "0.0.0.0",
                                     "inference_stack_engines": ["vllm", "llamacpp"], **host}, ALL_KEYS, False)
    expected = ["vllm"] if "vault_llamacpp_api_key" in host else ["vllm", "llamacpp"]
    assert [line.split(" ", 1)[0] for line in out] == expected, out
    assert out[0] == ("vllm would be published on 0.0.0.0 (inference_stack_bind_address): " + GAP + ": publish it on "
                      "127.0.0.1 (the gateway is the way in from the network), or set "
                      "preflight_allow_unauthenticated: true to accept an engine anyone on the network can use")
    assert all(KEY not in line for line in out)
    assert exposure.ansible_refusals({"inference_stack_bind_address": "0.0.0.0", "inference_stack_engines": ["vllm"],
                                      "preflight_allow_unauthenticated": True, **host}, ALL_KEYS, False) == []


@pytest.mark.parametrize("host", [
    {"inference_stack_bind_address": "127.0.0.1"},                                    # loopback (the default)
    {},                                                                               # the default
    {"inference_stack_bind_address": "0.0.0.0", "inference_stack_engines": "llamacpp,ollama",
     "vault_llamacpp_api_key": KEY},                                                  # keyed, text list
    {"inference_stack_bind_address": "0.0.0.0", "inference_stack_engines": ["llamacpp"],
     "hf_secret_llamacpp_api_key": KEY, "vault_llamacpp_api_key": ""},                # the role's own variable
    {"inference_stack_engines": ["vllm", "llamacpp"], "vault_vllm_api_key": KEY},      # keyed vLLM on loopback
    {"inference_stack_bind_address": "0.0.0.0", "preflight_allow_unauthenticated": "yes"},  # opted out, as text
    {"inference_stack_bind_address": "0.0.0.0", "inference_stack_vllm_port": "eighty"},  # the settings check says it
])
def test_ansible_settings_that_pass(host: dict[str, Any]) -> None:
    assert exposure.ansible_refusals(host, ALL_KEYS, False) == []


def test_a_blank_key_is_no_key_and_an_engine_the_roles_cannot_key_is_said_so() -> None:
    host = {"inference_stack_bind_address": "0.0.0.0", "inference_stack_engines": ["llamacpp", "ollama"],
            "vault_llamacpp_api_key": "  \n", "vault_ollama_api_key": KEY}
    out = exposure.ansible_refusals(host, ["hf_secret_llamacpp_api_key"], False)  # the roles key llama.cpp only
    assert len(out) == 1 and out[0].startswith("llamacpp ") and "give it one (vault_llamacpp_api_key)" in out[0]
    out = exposure.ansible_refusals({**host, "vault_llamacpp_api_key": KEY}, [], False)  # the roles key none
    assert out[0].startswith("llamacpp would be published on 0.0.0.0 (inference_stack_bind_address) but cannot "
                             "require an API key here")
    assert all(KEY not in line for line in out)


def test_pyinfra_style_call_with_its_own_key_names() -> None:
    out = exposure.deployer_refusals({"inference_stack_bind_address": "::",
                                      "inference_stack_engines": ["llamacpp", "vllm"]},
                                     keyed={"llamacpp": False, "vllm": True},
                                     key_names={"llamacpp": "hf_secret_llamacpp_api_key_file",
                                                "vllm": "hf_secret_vllm_api_key_file"})
    assert out == ["llamacpp would be published on :: (inference_stack_bind_address) without an API key: give it "
                   "one (hf_secret_llamacpp_api_key_file), publish it on 127.0.0.1, or set "
                   "preflight_allow_unauthenticated: true to accept an engine anyone on the network can use",
                   "vllm would be published on :: (inference_stack_bind_address): " + GAP + ": publish it on 127.0.0.1 "
                   "(the gateway is the way in from the network), or set preflight_allow_unauthenticated: true to "
                   "accept an engine anyone on the network can use"]


# -- compose-preflight: the console script on real .env files -----------------------------------------------------
def _project(tmp_path: Path, lines: list[str], *, vllm_key: str = "", override: dict[str, Any] | None = None
             ) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    for f in ("compose.yaml", "compose.cpu.yaml"):
        shutil.copy(ROOT / "compose" / f, d / f)
    (d / "secrets").mkdir()
    for name, content in (("hf_token", ""), ("vllm_api_key", vllm_key)):
        (d / "secrets" / name).write_text(content)
        (d / "secrets" / name).chmod(0o600)
    models = d / "models"
    for e in CAT.engines.values():
        if e.model_path_setting and str(e.model_path_setting.env_default).startswith("/models/"):
            p = models / str(e.model_path_setting.env_default)[len("/models/"):]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    files = "compose.yaml:compose.cpu.yaml"
    if override:
        (d / "compose.lab.yaml").write_text(yaml.safe_dump(override))
        files += ":compose.lab.yaml"
    ports = [f"{CAT.engines[e].port_setting.env}={free_port()}" for e in CAT.deployed]
    (d / ".env").write_text("\n".join([f"COMPOSE_FILE={files}", "MODELS_DIR=./models", *ports, *lines]) + "\n")
    return d


def _clean_environ() -> dict[str, str]:
    from healthchecks import preflight
    return {k: v for k, v in os.environ.items() if not (k.startswith(preflight.PREFIXES) or k in preflight.DEFAULTS)}


def preflight_run(d: Path, services: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "compose-preflight"), str(d), "--services", services], capture_output=True,
                          text=True, timeout=60, env={**_clean_environ(), **env})


def _refused(r: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in r.stderr and KEY not in r.stdout + r.stderr
    return [ln for ln in r.stderr.splitlines() if "would be published on" in ln]


@pytest.mark.parametrize(("lines", "services", "engine", "words"), [
    (["BIND_ADDRESS=0.0.0.0"], "vllm", "vllm",
     "vllm would be published on 0.0.0.0 (BIND_ADDRESS): " + GAP + ": publish it on 127.0.0.1"),
    (["BIND_ADDRESS=0.0.0.0"], "llamacpp", "llamacpp",
     "llamacpp would be published on 0.0.0.0 (BIND_ADDRESS) without an API key: give it one (LLAMACPP_API_KEY_FILE)"),
    (["OLLAMA_BIND_ADDRESS=0.0.0.0"], "ollama", "ollama",
     "ollama would be published on 0.0.0.0 (OLLAMA_BIND_ADDRESS) but cannot require an API key here"),
    (["BIND_ADDRESS=::"], "vllm", "vllm", "vllm would be published on :: (BIND_ADDRESS): " + GAP),
    (["BIND_ADDRESS=0.0.0.0", "LLAMACPP_API_KEY_FILE=./secrets/blank"], "llamacpp", "llamacpp",
     "llamacpp would be published on 0.0.0.0 (BIND_ADDRESS) without an API key"),  # blanks are no key
    (["BIND_ADDRESS=0.0.0.0", "ALLOW_UNAUTHENTICATED=0"], "vllm", "vllm",
     "vllm would be published on 0.0.0.0 (BIND_ADDRESS): " + GAP),
    # SGLang (an optional profile) has no key in compose: refused beyond loopback like Ollama
    (["BIND_ADDRESS=0.0.0.0"], "sglang", "sglang",
     "sglang would be published on 0.0.0.0 (BIND_ADDRESS) but cannot require an API key here"),
])
def test_compose_preflight_refuses_each_exposed_keyless_engine(tmp_path: Path, lines: list[str], services: str,
                                                               engine: str, words: str) -> None:
    d = _project(tmp_path, lines)
    (d / "secrets" / "blank").write_text(" \n\n")
    (d / "secrets" / "blank").chmod(0o600)
    r = preflight_run(d, services)
    assert r.returncode == 1, r.stderr
    refused = _refused(r)
    assert len(refused) == 1 and refused[0].startswith(f"compose-preflight: {words}"), r.stderr
    assert "ALLOW_UNAUTHENTICATED=1" in refused[0]


@pytest.mark.parametrize(("services", "vllm_key"), [("vllm", KEY), ("vllm,llamacpp", KEY + "\n")],
                         ids=["vllm", "vllm+llamacpp-newline"])
def test_compose_preflight_refuses_a_keyed_vllm_beyond_loopback(tmp_path: Path, services: str, vllm_key: str
                                                                ) -> None:
    """A key does not let vLLM be published: /invocations answers without it; a keyed llama.cpp beside it passes."""
    d = _project(tmp_path, ["BIND_ADDRESS=0.0.0.0", "LLAMACPP_API_KEY_FILE=./secrets/llama"], vllm_key=vllm_key)
    (d / "secrets" / "llama").write_text(f"{KEY}-l\n")
    (d / "secrets" / "llama").chmod(0o600)
    r = preflight_run(d, services)
    assert r.returncode == 1, r.stderr
    assert _refused(r) == ["compose-preflight: vllm would be published on 0.0.0.0 (BIND_ADDRESS): " + GAP + ": publish "
                           "it on 127.0.0.1 (the gateway is the way in from the network), or set "
                           "ALLOW_UNAUTHENTICATED=1 to accept an engine anyone on the network can use"], r.stderr
    assert preflight_run(d, services, ALLOW_UNAUTHENTICATED="1").returncode == 0


def test_compose_preflight_says_every_exposed_engine_once(tmp_path: Path) -> None:
    d = _project(tmp_path, ["BIND_ADDRESS=0.0.0.0", "OLLAMA_BIND_ADDRESS=0.0.0.0"])
    r = preflight_run(d, "vllm,ollama,llamacpp")
    assert r.returncode == 1
    assert [ln.split()[1] for ln in _refused(r)] == ["vllm", "ollama", "llamacpp"], r.stderr


def test_the_process_environment_wins_as_in_compose(tmp_path: Path) -> None:
    d = _project(tmp_path, ["BIND_ADDRESS=127.0.0.1"])
    r = preflight_run(d, "vllm", BIND_ADDRESS="0.0.0.0")
    assert r.returncode == 1 and len(_refused(r)) == 1, r.stderr


def test_a_lab_override_publishing_an_engine_literally_is_refused(tmp_path: Path) -> None:
    """A compose override adding ``0.0.0.0:PORT:11434`` (or a port without a host address) exposes Ollama whatever
    the settings say: named as the compose file's ports."""
    d = _project(tmp_path, [], override={"services": {"ollama": {"ports": [f"{free_port()}:11434"]}}})
    r = preflight_run(d, "ollama")
    assert r.returncode == 1
    refused = _refused(r)
    assert len(refused) == 1 and "ollama would be published on 0.0.0.0 (the compose file's ports of ollama)" \
        in refused[0], r.stderr


@pytest.mark.parametrize(("lines", "services", "vllm_key"), [
    ([], "vllm,ollama,llamacpp", ""),                                          # the defaults: loopback
    (["BIND_ADDRESS=127.0.0.2", "OLLAMA_BIND_ADDRESS=127.0.0.3"], "vllm,ollama,llamacpp", ""),
    (["BIND_ADDRESS=0.0.0.0", "LLAMACPP_API_KEY_FILE=./secrets/llama"], "llamacpp,ollama", ""),  # Ollama: loopback
    (["LLAMACPP_API_KEY_FILE=./secrets/llama"], "vllm,llamacpp", KEY + "\n"),  # keyed on loopback
    (["BIND_ADDRESS=0.0.0.0", "OLLAMA_BIND_ADDRESS=0.0.0.0", "ALLOW_UNAUTHENTICATED=1"], "vllm,ollama,llamacpp",
     ""),                                                                       # the lab opted out
], ids=["defaults", "loopback", "llamacpp-keyed", "both-keyed-loopback", "opted-out"])
def test_compose_preflight_passes_keyed_loopback_or_opted_out(tmp_path: Path, lines: list[str], services: str,
                                                              vllm_key: str) -> None:
    d = _project(tmp_path, lines, vllm_key=vllm_key)
    (d / "secrets" / "llama").write_text(f"# the lab's keys\n{KEY}\n")
    (d / "secrets" / "llama").chmod(0o600)
    r = preflight_run(d, services)
    assert _refused(r) == [], r.stderr
    assert r.returncode == 0, r.stderr


def test_a_bad_opt_out_is_named_not_taken_as_yes(tmp_path: Path) -> None:
    d = _project(tmp_path, ["BIND_ADDRESS=0.0.0.0", "ALLOW_UNAUTHENTICATED=yes"])
    r = preflight_run(d, "vllm")
    assert r.returncode == 1
    assert re.search(r"^compose-preflight: ALLOW_UNAUTHENTICATED='yes' must be 0 or 1$", r.stderr, re.M), r.stderr


def test_a_set_llamacpp_key_file_is_checked_like_every_secret(tmp_path: Path) -> None:
    d = _project(tmp_path, ["BIND_ADDRESS=0.0.0.0", "LLAMACPP_API_KEY_FILE=./secrets/llama"])
    (d / "secrets" / "llama").write_text(KEY)
    (d / "secrets" / "llama").chmod(0o644)
    r = preflight_run(d, "llamacpp")
    assert r.returncode == 1 and KEY not in r.stderr
    assert "secret file ./secrets/llama (LLAMACPP_API_KEY_FILE) has mode 0644" in r.stderr, r.stderr
