"""compose-preflight with the gateway (issue 21): the gateway's master key file must hold a key the gateway starts
with (the compose entrypoint stops on an empty one, LiteLLM 1.110 on a blank or publicly known one unless its config
opts out), its rendered config (GATEWAY_CONFIG_FILE) must be a LiteLLM config with a model_list, and the port checks
use the address each service really binds (its compose ports line: GATEWAY_BIND_ADDRESS, OLLAMA_BIND_ADDRESS, not
only BIND_ADDRESS). Also: Debian's docker-compose v1 accepts the compose project with the gateway service.

The real compose-preflight (console script and function), the real compose files and .env.example, the kit's own
config renderer (python -m healthchecks.gateway) and the real /usr/bin/docker-compose (no Docker daemon needed).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from healthchecks import gateway, preflight

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KEY = "sk-preflight-" + "7f3a" * 8  # a key of the lab's own: never printed
EXAMPLE_KEY = "sk-1234"  # LiteLLM's documentation example, refused by LiteLLM 1.110 (master_key_boot_check.py)
ENTRYPOINT_REFUSAL = 'if [ "$${GATEWAY_MASTER_KEY:-none}" = none ]; then'


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting compose-preflight reads comes from this process's environment (it would win over .env)."""
    for k in list(os.environ):
        if k.startswith(preflight.PREFIXES) or k in preflight.DEFAULTS:
            monkeypatch.delenv(k)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A compose project as a lab has it: the kit's compose files, .env from .env.example (CPU files, free ports,
    a models folder), the secret files, the gateway's master key and its config rendered by the kit."""
    d = tmp_path / "compose"
    d.mkdir()
    for f in ("compose.yaml", "compose.cpu.yaml", "compose.gpu.yaml"):
        shutil.copy(ROOT / "compose" / f, d / f)
    models = tmp_path / "models"
    models.mkdir()
    lines = (ROOT / "compose" / ".env.example").read_text(encoding="utf-8").splitlines()
    ports = {k: str(free_port()) for k in ("VLLM_PORT", "OLLAMA_PORT", "LLAMACPP_PORT", "SGLANG_PORT",
                                            "GATEWAY_PORT")}
    own = {"COMPOSE_FILE": "compose.yaml:compose.cpu.yaml", "MODELS_DIR": str(models), **ports}
    kept = [ln for ln in lines if ln.split("=", 1)[0] not in own]
    (d / ".env").write_text("\n".join([*kept, *(f"{k}={v}" for k, v in own.items())]) + "\n", encoding="utf-8")
    secrets = d / "secrets"
    secrets.mkdir()
    for s in ("hf_token", "vllm_api_key"):
        (secrets / s).touch(mode=0o600)
    write_key(d, KEY)
    (d / "gateway").mkdir()
    assert gateway.main(["--env", str(d / ".env"), "-o", str(d / "gateway" / "config.yaml")]) == 0
    return d


def write_key(d: Path, key: str) -> None:
    f = d / "secrets" / "gateway_master_key"
    f.touch(mode=0o600)
    f.write_text(key, encoding="utf-8")


def run(capsys: pytest.CaptureFixture[str], d: Path, services: str = "gateway") -> tuple[int, str]:
    """compose-preflight's main (as the console script runs it): exit code and stderr."""
    rc = preflight.main([str(d), "--services", services])
    return rc, capsys.readouterr().err


def check(d: Path, services: str = "gateway", **extra: str) -> list[str]:
    return preflight.preflight(d, services.split(","), {**os.environ, **extra})


# -- the master key -------------------------------------------------------------------------------------------------
def test_a_project_with_the_gateways_key_and_config_passes(project: Path) -> None:
    r = subprocess.run([str(BIN / "compose-preflight"), str(project), "--services", "gateway"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert f"{project} ready for gateway" in r.stdout and KEY not in r.stdout + r.stderr


@pytest.mark.parametrize("content", ["", "\n", "  \n\t", "none", "none\n"])
def test_an_empty_master_key_fails_naming_the_setting(project: Path, capsys: pytest.CaptureFixture[str],
                                                      content: str) -> None:
    """The compose entrypoint reads the secret with $(cat), an empty one as "none", and stops: so does preflight
    (before this, compose-preflight --services gateway passed and `up` failed in the container)."""
    write_key(project, content)
    rc, err = run(capsys, project)
    assert rc == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("compose-preflight: GATEWAY_MASTER_KEY_FILE (./secrets/gateway_master_key) holds "
                               "no key: the gateway refuses to start without its master key"), lines
    assert "leave it empty" not in err


def test_the_compose_gateway_honours_no_opt_out_for_an_empty_key(project: Path) -> None:
    """LiteLLM's own opt-out (general_settings.dangerously_permit_weak_or_unset_master_key) does not start the
    compose gateway with an empty key: its entrypoint stops first, whatever the config says. Preflight says the
    same; the day the entrypoint changes, this test says to revisit the rule."""
    entrypoint = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())["services"]["gateway"]["entrypoint"]
    assert ENTRYPOINT_REFUSAL in entrypoint[2] and "exit 1" in entrypoint[2]
    cfg = project / "gateway" / "config.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc["general_settings"][preflight.GATEWAY_KEY_OPT_OUT] = True
    cfg.write_text(yaml.safe_dump(doc))
    write_key(project, "")
    errors = check(project)
    assert [e.split(":")[0] for e in errors] == ["GATEWAY_MASTER_KEY_FILE (./secrets/gateway_master_key) holds no key"]
    # nor does ALLOW_UNAUTHENTICATED=1 (the engines' opt-out): the gateway is the authenticated way in
    assert check(project, ALLOW_UNAUTHENTICATED="1") == errors


def test_a_publicly_known_key_fails_unless_the_config_opts_out(project: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    write_key(project, EXAMPLE_KEY + "\n")
    rc, err = run(capsys, project)
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "GATEWAY_MASTER_KEY_FILE (./secrets/gateway_master_key) holds a publicly known example key" in err
    assert EXAMPLE_KEY not in err
    cfg = project / "gateway" / "config.yaml"
    doc = yaml.safe_load(cfg.read_text())
    doc["general_settings"][preflight.GATEWAY_KEY_OPT_OUT] = True  # LiteLLM starts with it (local development)
    cfg.write_text(yaml.safe_dump(doc))
    assert check(project) == []


@pytest.mark.parametrize("kind", ["missing", "dev-null", "directory", "mode"])
def test_a_master_key_file_that_is_not_a_private_file_is_named(project: Path, kind: str) -> None:
    key = project / "secrets" / "gateway_master_key"
    extra = {}
    if kind == "missing":
        key.unlink()
    elif kind == "dev-null":  # the other key files may be /dev/null (no key); the gateway's may not
        extra["GATEWAY_MASTER_KEY_FILE"] = os.devnull
    elif kind == "directory":
        key.unlink()
        key.mkdir()
    else:
        key.chmod(0o644)
    errors = check(project, **extra)
    assert len(errors) == 1 and "GATEWAY_MASTER_KEY_FILE" in errors[0], errors
    assert "leave it empty" not in errors[0] and KEY not in errors[0]


def test_the_master_key_is_checked_only_when_the_gateway_runs(project: Path) -> None:
    write_key(project, "")
    (project / "gateway" / "config.yaml").unlink()
    assert not [e for e in check(project, "llamacpp") if "GATEWAY" in e]


# -- the rendered config ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "words"), [
    (None, "does not exist: render it with `python -m healthchecks.gateway"),
    ("dir", "is a directory, not the gateway's config file"),
    (b"model_list: [\n  - a: b\n", "is not valid YAML (line 2)"),
    (b"\xff\xfe\x00m\x00o", "is not UTF-8 text"),
    (b"", "is not a YAML mapping with a model_list"),
    (b"- model_name: x\n", "is not a YAML mapping with a model_list"),
    (b"general_settings: {master_key: os.environ/GATEWAY_MASTER_KEY}\n", "has no model_list"),
    (b"model_list: []\n", "has no model_list"),
    (b"model_list: {model_name: x}\n", "has no model_list"),
    # LiteLLM would start without the key file's key: refused (NOT_SET), or keyed by a key written in clear
    (b"model_list: [{model_name: x}]\n", ": general_settings.master_key must be os.environ/GATEWAY_MASTER_KEY (the"),
    (b"model_list: [{model_name: x}]\ngeneral_settings: {master_key: sk-in-clear-5e1f}\n",
     ": general_settings.master_key must be os.environ/GATEWAY_MASTER_KEY"),
    (b"model_list: [{model_name: x}]\ngeneral_settings: {master_key: os.environ/LITELLM_MASTER_KEY}\n",
     ": general_settings.master_key must be os.environ/GATEWAY_MASTER_KEY"),
])
def test_a_bad_gateway_config_is_one_line_naming_the_setting(project: Path, capsys: pytest.CaptureFixture[str],
                                                              content: bytes | str | None, words: str) -> None:
    cfg = project / "gateway" / "config.yaml"
    cfg.unlink()
    if content == "dir":
        cfg.mkdir()
    elif isinstance(content, bytes):
        cfg.write_bytes(content)
    rc, err = run(capsys, project)
    assert rc == 1 and "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("compose-preflight: GATEWAY_CONFIG_FILE (./gateway/config.yaml)"), lines
    assert words in lines[0] and len(lines[0]) < 200 and "sk-in-clear" not in err, lines


def test_the_config_setting_is_followed(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "lab-gateway.yaml"
    shutil.move(project / "gateway" / "config.yaml", elsewhere)
    assert [e.split(" does not")[0] for e in check(project)] == ["GATEWAY_CONFIG_FILE (./gateway/config.yaml)"]
    assert check(project, GATEWAY_CONFIG_FILE=str(elsewhere)) == []


# -- the address each service binds -------------------------------------------------------------------------------
def test_an_address_not_on_this_host_is_named_by_the_services_own_setting(project: Path) -> None:
    """GATEWAY_BIND_ADDRESS (not BIND_ADDRESS) decides where the gateway binds: 192.0.2.1 (TEST-NET-1) is on no
    host. Before, preflight tried BIND_ADDRESS (127.0.0.1) and passed."""
    errors = check(project, GATEWAY_BIND_ADDRESS="192.0.2.1")
    assert errors == ["GATEWAY_BIND_ADDRESS=192.0.2.1 is not an address of this host: use 127.0.0.1, 0.0.0.0 or "
                      "one of this host's addresses (ip -brief address)"], errors
    errors = check(project, "ollama,llamacpp", OLLAMA_BIND_ADDRESS="192.0.2.1", ALLOW_UNAUTHENTICATED="1")
    assert [e for e in errors if "not an address" in e] == [
        "OLLAMA_BIND_ADDRESS=192.0.2.1 is not an address of this host: use 127.0.0.1, 0.0.0.0 or one of this "
        "host's addresses (ip -brief address)"], errors


def test_a_port_in_use_on_the_services_own_address_is_found(project: Path) -> None:
    """Another process holds the gateway's port on 127.0.0.2, where GATEWAY_BIND_ADDRESS publishes it: found
    (127.0.0.1, BIND_ADDRESS, is free, which is all preflight tried before)."""
    with socket.socket() as held:
        held.bind(("127.0.0.2", 0))
        held.listen()
        port = held.getsockname()[1]
        errors = check(project, GATEWAY_BIND_ADDRESS="127.0.0.2", GATEWAY_PORT=str(port))
        assert check(project, GATEWAY_PORT=str(port)) == []  # on 127.0.0.1 the port is free
    assert errors == [f"port {port} on 127.0.0.2 (GATEWAY_PORT (gateway)) is already in use by another process: "
                      "stop it or change GATEWAY_PORT in .env"], errors


def test_one_port_on_two_addresses_is_no_clash_but_on_one_address_is(project: Path) -> None:
    port = str(free_port())
    services = "llamacpp,gateway"
    # llama.cpp on BIND_ADDRESS=127.0.0.1, the gateway on 127.0.0.2: Docker publishes both
    errors = check(project, services, LLAMACPP_PORT=port, GATEWAY_PORT=port, GATEWAY_BIND_ADDRESS="127.0.0.2")
    assert not [e for e in errors if "clash" in e], errors
    # the same address, or a wildcard that covers the other: one port for two services
    for bind, gateway_bind in (("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "0.0.0.0"), ("0.0.0.0", "127.0.0.2")):
        errors = check(project, services, LLAMACPP_PORT=port, GATEWAY_PORT=port, BIND_ADDRESS=bind,
                       GATEWAY_BIND_ADDRESS=gateway_bind, ALLOW_UNAUTHENTICATED="1")
        clashes = [e for e in errors if "clash" in e]
        assert clashes == [f"GATEWAY_PORT={port} clashes with LLAMACPP_PORT (llamacpp) on {gateway_bind} "
                           "(GATEWAY_BIND_ADDRESS): every engine needs its own port (or its own address)"], errors


# -- compose v1 ---------------------------------------------------------------------------------------------------
def test_compose_v1_accepts_the_gateway_service(project: Path) -> None:
    """Debian's docker-compose 1.29 (tests/setup.sh installs it; up.sh falls back to it) reads the project with the
    gateway's profile: the service, its secrets as files, the config mount, the address and port its settings give
    and the entrypoint's $$ escapes (a literal $ for the shell) as compose v2 reads them. No daemon is needed."""
    v1 = shutil.which("docker-compose", path="/usr/bin")
    assert v1 is not None, "docker-compose v1 is not installed (tests/setup.sh installs Debian's docker-compose)"
    for build in ("vllm-cpu", "llamacpp"):  # compose.cpu.yaml's build contexts: v1 wants them to exist
        (project / "images" / build).mkdir(parents=True)
    env = {**os.environ, "GATEWAY_BIND_ADDRESS": "0.0.0.0", "GATEWAY_PORT": "4100"}
    r = subprocess.run([v1, "--project-directory", str(project), "--profile", "gateway", "config"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=project)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    gw = doc["services"]["gateway"]
    assert gw["ports"] == ["0.0.0.0:4100:4000/tcp"], gw["ports"]
    assert gw["image"] == "ghcr.io/berriai/litellm:main-v1.110.2"
    assert {s["source"] for s in gw["secrets"]} == {"gateway_master_key", "hf_token", "vllm_api_key",
                                                    "llamacpp_api_key", "gateway_tls_cert", "gateway_tls_key"}
    assert doc["secrets"]["gateway_master_key"] == {"file": str(project / "secrets" / "gateway_master_key")}
    assert doc["secrets"]["gateway_tls_cert"] == {"file": "/dev/null"}
    assert gw["volumes"] == [f"{project / 'gateway' / 'config.yaml'}:/etc/litellm/config.yaml:ro"]
    assert gw["environment"]["HOST"] == "0.0.0.0" and gw["environment"]["LITELLM_MODE"] == "PRODUCTION"
    assert gw["entrypoint"][:2] == ["/bin/sh", "-c"] and ENTRYPOINT_REFUSAL in gw["entrypoint"][2]
    assert gw["healthcheck"]["start_period"] in ("180s", "3m")


# -- TLS with the lab's certificate ---------------------------------------------------------------------------------
def _self_signed(out: Path, name: str = "cert") -> tuple[Path, Path]:
    """A self-signed certificate for localhost and its key (python cryptography): (cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    cert_file, key_file = out / f"{name}.pem", out / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def test_a_certificate_and_key_that_load_pass(project: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    assert check(project, GATEWAY_TLS_CERT_FILE=str(cert), GATEWAY_TLS_KEY_FILE=str(key)) == []


@pytest.mark.parametrize("case", ["cert only", "key only", "empty cert", "empty key", "missing cert", "key mode",
                                  "other key", "not pem", "encrypted key"])
def test_a_tls_setting_the_gateway_cannot_serve_is_named(project: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str], case: str) -> None:
    """The entrypoint serves HTTPS only when both files hold something, plain HTTP otherwise without a word; and
    a pair that does not load stops LiteLLM's server. Each is one line naming the settings, no key printed."""
    cert, key = _self_signed(tmp_path)
    _, other_key = _self_signed(tmp_path, "other")
    env = {"GATEWAY_TLS_CERT_FILE": str(cert), "GATEWAY_TLS_KEY_FILE": str(key)}
    words = {"cert only": "GATEWAY_TLS_CERT_FILE is set but GATEWAY_TLS_KEY_FILE is not: the gateway would serve "
                          "plain HTTP",
             "key only": "GATEWAY_TLS_KEY_FILE is set but GATEWAY_TLS_CERT_FILE is not",
             "empty cert": "GATEWAY_TLS_CERT_FILE is empty: the gateway would serve plain HTTP",
             "empty key": "GATEWAY_TLS_KEY_FILE is empty: the gateway would serve plain HTTP",
             "missing cert": "GATEWAY_TLS_CERT_FILE (" + str(tmp_path / "nope.pem") + ") does not exist",
             "key mode": "(GATEWAY_TLS_KEY_FILE) has mode 0644",
             "other key": "do not load: the key does not belong to the certificate",
             "not pem": "do not load: not a PEM certificate and its unencrypted private key",
             "encrypted key": "do not load: not a PEM certificate and its unencrypted private key"}[case]
    if case == "cert only":
        del env["GATEWAY_TLS_KEY_FILE"]
    elif case == "key only":
        del env["GATEWAY_TLS_CERT_FILE"]
    elif case == "empty cert":
        cert.write_bytes(b"")
    elif case == "empty key":
        key.write_bytes(b"")
    elif case == "missing cert":
        env["GATEWAY_TLS_CERT_FILE"] = str(tmp_path / "nope.pem")
    elif case == "key mode":
        key.chmod(0o644)
    elif case == "other key":
        env["GATEWAY_TLS_KEY_FILE"] = str(other_key)
    elif case == "not pem":
        cert.write_bytes(b"not a certificate\n")
    else:
        k = serialization.load_pem_private_key(key.read_bytes(), None)
        key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(b"lab-passphrase")))
    with (project / ".env").open("a") as f:
        f.write("".join(f"{k}={v}\n" for k, v in env.items()))
    rc, err = run(capsys, project)
    assert rc == 1 and "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and words in lines[0], err
    assert "PRIVATE KEY" not in err and "lab-passphrase" not in err


# -- the Hugging Face fallback's token ----------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["", " \n\t"])
def test_a_hugging_face_fallback_without_a_token_is_refused(project: Path, capsys: pytest.CaptureFixture[str],
                                                            token: str) -> None:
    """A config rendered with GATEWAY_HF_FALLBACK_MODEL sends os.environ/HF_TOKEN to the HF router: an empty or
    blank hf_token secret would make the fallback 401 exactly when every replica is down. One line, no token."""
    env = project / ".env"
    env.write_text(env.read_text(encoding="utf-8") + "GATEWAY_HF_FALLBACK_MODEL=HuggingFaceTB/SmolLM3-3B\n",
                   encoding="utf-8")
    assert gateway.main(["--env", str(env), "-o", str(project / "gateway" / "config.yaml")]) == 0
    (project / "secrets" / "hf_token").write_text(token, encoding="utf-8")
    rc, err = run(capsys, project)
    assert rc == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("compose-preflight: the gateway falls back to Hugging Face (GATEWAY_HF_FALLBACK_MODEL)"
                               " but HF_TOKEN_FILE (./secrets/hf_token) holds no token"), lines
    token_value = "hf_" + "ab12" * 8
    (project / "secrets" / "hf_token").write_text(token_value + "\n", encoding="utf-8")
    rc, err = run(capsys, project)
    assert rc == 0 and token_value not in err, err


def test_no_fallback_needs_no_token(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The kit's default config never leaves the lab: an empty hf_token secret is fine for the gateway."""
    assert (project / "secrets" / "hf_token").read_text() == ""
    rc, err = run(capsys, project)
    assert rc == 0, err
