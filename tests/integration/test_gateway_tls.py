"""The gateway's TLS option ("TLS with the lab's certificate"), for real: a CA and a server certificate made here
(python ``cryptography``), the compose service ``gateway`` of compose/compose.yaml (the offline-built LiteLLM image,
as tests/integration/test_gateway.py starts it) given them through GATEWAY_TLS_CERT_FILE / GATEWAY_TLS_KEY_FILE,
in front of the session's real llama-server.

- ``healthcheck`` trusting the lab's CA (``--ca-bundle``, or ``SSL_CERT_FILE`` as every OpenSSL client reads it)
  passes over HTTPS, its TLS row naming the certificate's expiry;
- without the CA it fails (exit 1) with one line naming the certificate problem, no traceback, no key printed;
- plain HTTP to the gateway's port gets nothing served (the port speaks TLS only).

The gateway runs on the host network so that it reaches the engine on loopback (nothing leaves this machine)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, ROOT, Engine, free_port
from conftest import check_rows as rows
from conftest import run_healthcheck as run
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_gateway import IMAGE, _hostport, wait_live

from healthchecks import gateway

pytestmark = pytest.mark.integration
PROJECT = f"gik-gwtls-{os.getpid()}"
HOST = "localhost"  # the name the certificate is made for (and 127.0.0.1 as an IP SAN)


@dataclass
class TlsGateway:
    url: str  # https://localhost:PORT
    key: str
    key_file: Path
    ca: Path  # the lab's CA (PEM)
    container: str

    def logs(self) -> str:
        return subprocess.run(["docker", "logs", "--tail", "40", self.container], capture_output=True, text=True,
                              timeout=60).stdout[-4000:]


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca_and_server_cert(out: Path) -> tuple[Path, Path, Path]:
    """A lab CA and a server certificate it signed for localhost / 127.0.0.1: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gik test lab CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = out / "ca.pem", out / "server.pem", out / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    paths[2].chmod(0o600)
    return paths


@pytest.fixture(scope="module")
def tls_gw(llamacpp_server: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsGateway]:
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=60).returncode != 0:
        pytest.fail(f"{IMAGE} is missing: run `bash tests/setup.sh` (compose/images/build.sh builds it)",
                    pytrace=False)
    tmp = tmp_path_factory.mktemp("gateway-tls")
    ca, cert, cert_key = make_ca_and_server_cert(tmp)
    address, port = _hostport(llamacpp_server.url)
    hosts = {"local": {"address": address, "engines": ["llamacpp"], "ports": {"llamacpp": port},
                       "models": {"llamacpp": MODEL}}}
    config = gateway.render(gateway.lab_upstreams(hosts), gateway.Options(health_check_interval=15, request_timeout=60))
    cfg = tmp / "config.yaml"
    cfg.write_text(gateway.to_yaml(config))
    key = "sk-gwtls-" + os.urandom(12).hex()
    key_file = tmp / "gateway_master_key"
    key_file.write_text(key + "\n")
    empty = tmp / "empty"
    empty.write_text("")
    for f in (key_file, empty):
        f.chmod(0o600)
    gw_port = free_port()
    override = tmp / "compose.hostnet.yaml"
    override.write_text(f"services:\n  gateway:\n    network_mode: host\n    ports: !reset []\n"
                        f"    environment:\n      HOST: 127.0.0.1\n      PORT: \"{gw_port}\"\n")
    env = {**os.environ, "GATEWAY_IMAGE": IMAGE, "GATEWAY_CONFIG_FILE": str(cfg), "GATEWAY_MASTER_KEY_FILE":
           str(key_file), "HF_TOKEN_FILE": str(empty), "VLLM_API_KEY_FILE": str(empty),
           # llama-server here takes no key: an empty file says so (compose's default /dev/null is skipped by the
           # gateway's entrypoint, which then leaves LLAMACPP_API_KEY unset: LiteLLM's "Missing credentials")
           "LLAMACPP_API_KEY_FILE": str(empty),
           "GATEWAY_TLS_CERT_FILE": str(cert), "GATEWAY_TLS_KEY_FILE": str(cert_key), "COMPOSE_PROFILES": "gateway"}
    compose = ["docker", "compose", "-p", PROJECT, "-f", str(ROOT / "compose" / "compose.yaml"), "-f", str(override)]
    g = TlsGateway(f"https://{HOST}:{gw_port}", key, key_file, ca, f"{PROJECT}-gateway-1")
    try:
        up = subprocess.run([*compose, "up", "-d", "--no-deps", "gateway"], capture_output=True, text=True, env=env,
                            timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        wait_live(g.url, g.container, g.logs, seconds=180, verify=ssl.create_default_context(cafile=str(ca)))
        yield g
    finally:
        subprocess.run([*compose, "down", "-v", "-t", "5"], capture_output=True, env=env, timeout=300)


def _healthcheck(g: TlsGateway, *extra: str, env: dict[str, str] | None = None,
                 json_out: bool = True) -> subprocess.CompletedProcess[str]:
    return run(f"gateway={g.url}", "--api-key-file", f"gateway={g.key_file}", "--model", MODEL, "--no-diagnose",
               "--timeout", "60", *(["--json"] if json_out else []), *extra, env=env)


def test_healthcheck_trusting_the_lab_ca_passes_over_https(tls_gw: TlsGateway) -> None:
    """--ca-bundle, and SSL_CERT_FILE instead of it: exit 0, the TLS row names the certificate's expiry."""
    for how, extra, env in (("--ca-bundle", ("--ca-bundle", str(tls_gw.ca)), None),
                            ("SSL_CERT_FILE", (), {"SSL_CERT_FILE": str(tls_gw.ca)})):
        r = _healthcheck(tls_gw, *extra, env=env)
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            pytest.fail(f"{how}: healthcheck printed no JSON (exit {r.returncode}): {r.stderr[-2000:]}", pytrace=False)
        c = rows(doc)
        bad = {n: (row["status"], row["reason"]) for n, row in c.items() if row["status"] not in ("pass", "skip")}
        if r.returncode != 0:
            pytest.fail(f"{how}: healthcheck exit {r.returncode}: {json.dumps(bad, indent=1)}\n{r.stderr[-2000:]}\n"
                        f"{tls_gw.logs()}", pytrace=False)
        assert c["tls"]["status"] == "pass" and "certificate valid until" in c["tls"]["reason"], (how, c["tls"])
        assert c["liveness"]["status"] == "pass", (how, c["liveness"])
        assert tls_gw.key not in r.stdout + r.stderr


def test_healthcheck_without_the_lab_ca_names_the_certificate_problem(tls_gw: TlsGateway, tmp_path: Path) -> None:
    """No CA trusted (an empty SSL_CERT_FILE would fall back to the system store: point it at a CA that did not
    sign the gateway's certificate): exit 1, one line naming the certificate problem, no traceback, no key."""
    other, _, _ = make_ca_and_server_cert(tmp_path)  # a CA of its own: trusted, but not the gateway's
    for how, extra, env in (("system store", (), None),
                            ("another CA", ("--ca-bundle", str(other)), None)):
        r = _healthcheck(tls_gw, *extra, env=env, json_out=False)
        out = r.stdout + r.stderr
        assert r.returncode == 1, (how, r.returncode, out[-2000:])
        assert "Traceback" not in out, (how, out[-3000:])
        assert tls_gw.key not in out
        # the verdict line, whole on one line: "UNHEALTHY gateway@localhost:PORT: tls: TLS error with localhost:
        # [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate ..."
        named = [ln for ln in out.splitlines() if ln.startswith("UNHEALTHY gateway@localhost:")
                 and "TLS error with localhost: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed" in ln]
        assert named, (how, out[-2000:])


def test_plain_http_to_the_tls_port_is_served_nothing(tls_gw: TlsGateway) -> None:
    """The port speaks TLS only: an http:// request with the key gets no completion."""
    url = tls_gw.url.replace("https://", "http://")
    try:
        r = httpx.post(url + "/v1/chat/completions", timeout=20, headers={"Authorization": f"Bearer {tls_gw.key}"},
                       json={"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
    except httpx.HTTPError:
        return  # the TLS server closed the plain connection
    assert r.status_code >= 400, (r.status_code, r.text[:200])
