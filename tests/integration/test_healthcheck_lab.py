"""healthcheck against what labs really run (issue 10): odd stream events beside healthy endpoints, per-engine
keys and models, reasoning models, embedding models, internal CAs, partial GPU offload, structured output,
versions, JUnit/Prometheus files. Real engines where they can show it (vLLM CPU, llama-server, keyed
llama-server), the Ollama double and the faulty server where a real one cannot be had here."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import ssl
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MODEL
from conftest import check_rows as rows
from conftest import run_healthcheck as run

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
# the session's real engines are shared with the load tests of both xdist workers on CI's two cores, where a request
# to them took longer than healthcheck's default --timeout 30 (the CI run of a1fef5c, test_gpu_residency): the
# tests against them are about verdicts, not latency, so they allow 90 s a request
SHARED = ("--timeout", "90")


def doc_of(r: subprocess.CompletedProcess[str]) -> dict:
    assert "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout)


# -- 1: a stream event that is JSON but not an object; no endpoint's result is lost -----------------------
def test_non_object_event_fails_its_row_and_loses_no_other_result(faulty_server, ollama_double) -> None:
    r = run(f"vllm={faulty_server}/nonobject", f"ollama={ollama_double.url}", "--json", "--no-diagnose",
            "--timeout", "5")
    assert r.returncode == 1
    doc = doc_of(r)
    assert [e["engine"] for e in doc["endpoints"]] == ["vllm", "ollama"]
    stream = rows(doc, 0)["stream"]
    assert stream["status"] == "fail" and "event is JSON but not an object: [1]" in stream["reason"]
    assert doc["endpoints"][1]["healthy"] is True  # the healthy endpoint beside it is reported
    human = run(f"vllm={faulty_server}/nonobject", "--no-diagnose", "--timeout", "5")
    assert human.returncode == 1 and "Traceback" not in human.stderr
    assert [x for x in human.stderr.splitlines() if x.startswith("UNHEALTHY")] == [
        f"UNHEALTHY vllm@127.0.0.1:{faulty_server.rsplit(':', 1)[1]}: stream: stream /v1/chat/completions: "
        "event is JSON but not an object: [1]"]


def test_odd_shapes_inside_events_are_read_not_crashed_on(faulty_server) -> None:
    r = run(f"openai={faulty_server}/badshape", "--json", "--no-diagnose", "--timeout", "5")
    doc = doc_of(r)
    assert r.returncode == 0, doc
    assert rows(doc)["stream"]["status"] == "pass" and doc["endpoints"][0]["models"] == ["m"]


# -- 2: per-engine keys and models; the auth probe is a generating POST ------------------------------------
def test_key_on_one_engine_only(llamacpp_with_key, ollama_double) -> None:
    """The kit's own stack keys one engine: the key goes there only, and Ollama stays healthy."""
    engine, key_file = llamacpp_with_key
    r = run(f"llamacpp={engine.url}", f"ollama={ollama_double.url}", "--api-key-file", f"llamacpp={key_file}",
            "--model", f"llamacpp={MODEL}", "--model", f"ollama={MODEL}", "--json", "--no-diagnose", *SHARED,
            timeout=600)
    doc = doc_of(r)
    assert r.returncode == 0, r.stdout
    auth = rows(doc, 0)["auth"]
    assert auth["status"] == "pass" and "POST /v1/chat/completions without the key refused (401)" in auth["reason"]
    assert rows(doc, 1)["auth"]["status"] == "skip"
    assert key_file.read_text().strip() not in r.stdout + r.stderr
    # a bare key file still means every endpoint: Ollama, which enforces none, is then reported
    bare = run(f"llamacpp={engine.url}", f"ollama={ollama_double.url}", "--api-key-file", str(key_file),
               "--json", "--no-diagnose", *SHARED, timeout=600)
    assert bare.returncode == 1
    reason = rows(doc_of(bare), 1)["auth"]["reason"]
    assert reason == "POST /api/generate without the API key answered 200: the key is not enforced"


def test_per_engine_key_and_model_follow_a_detected_engine(llamacpp_with_key) -> None:
    engine, key_file = llamacpp_with_key
    port = engine.url.rsplit(":", 1)[1]
    r = run(engine.url, "--api-key-file", str(key_file), "--model", f"llamacpp={MODEL}", "--model", "vllm=other",
            "--json", "--no-diagnose", *SHARED, timeout=600)
    doc = doc_of(r)
    assert r.returncode == 0, r.stdout
    ep = doc["endpoints"][0]
    assert ep["name"] == f"llamacpp@127.0.0.1:{port}"  # item 9: not ?@127.0.0.1:PORT
    assert ep["model"] == MODEL
    # the key for llama.cpp only: the server refuses every probe without it, and is still recognised
    r = run(engine.url, "--api-key-file", f"llamacpp={key_file}", "--api-key-file", f"vllm={key_file}",
            "--json", "--no-diagnose", *SHARED, timeout=600)
    doc = doc_of(r)
    assert r.returncode == 0, r.stdout
    assert doc["endpoints"][0]["engine"] == "llamacpp"
    assert rows(doc)["auth"]["status"] == "pass"


def test_ollama_behind_a_keyed_proxy() -> None:
    from doubles.ollama_double import serve

    server = serve(models=[MODEL], api_key="sk-proxy-123")
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        key = Path(os.environ.get("TMPDIR", "/tmp")) / f"gik-proxy-key-{os.getpid()}"
        key.write_text("sk-proxy-123\n")
        r = run(f"ollama={url}", "--api-key-file", f"ollama={key}", "--json", "--no-diagnose")
        doc = doc_of(r)
        assert r.returncode == 0, r.stdout
        assert rows(doc)["auth"]["reason"] == "POST /api/generate without the key refused (401)"
        key.unlink()
    finally:
        server.shutdown()
        server.server_close()


# -- 3: reasoning models ---------------------------------------------------------------------------------
def test_answer_in_reasoning_content_counts(faulty_server) -> None:
    r = run(f"vllm={faulty_server}/reasoning", "--json", "--no-diagnose", "--timeout", "5")
    doc = doc_of(r)
    for name in ("completion", "stream"):
        row = rows(doc)[name]
        assert row["status"] == "pass" and "answer in reasoning_content only" in row["reason"], row
    assert rows(doc)["liveness"]["status"] == "pass"


# -- embedding models ------------------------------------------------------------------------------------
def test_embedding_model_is_checked_by_embeddings_not_chat(faulty_server) -> None:
    r = run(f"openai={faulty_server}/embed", "--json", "--no-diagnose", "--timeout", "5")
    doc = doc_of(r)
    assert r.returncode == 0, doc
    c = rows(doc)
    assert c["completion"]["status"] == "skip" and "embedding model" in c["completion"]["reason"]
    assert c["embeddings"]["status"] == "pass" and "16-dimensional" in c["embeddings"]["reason"]


@pytest.fixture(scope="module")
def vllm_embedding_server(engine_logs: Path) -> Iterator[str]:
    """Real vLLM serving the test model as an embedding model (``--runner pooling --convert embed``): it has
    no chat route at all (404) and answers /v1/embeddings. ~90 s to start on 2 cores."""
    from conftest import HF_DIR, VLLM_PY, _need, _start, _stop, free_port

    _need(VLLM_PY)
    _need(HF_DIR / "config.json")
    port = free_port()
    argv = [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(HF_DIR),
            "--served-model-name", "smol-embed", "--host", "127.0.0.1", "--port", str(port), "--max-model-len",
            "512", "--enforce-eager", "--dtype", "bfloat16", "--runner", "pooling", "--convert", "embed"]
    env = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_TARGET_DEVICE": "cpu",
           "OMP_NUM_THREADS": str(os.cpu_count() or 2)}
    engine = _start("vllm-embed", argv, f"http://127.0.0.1:{port}", "/health", engine_logs, 420, env)
    yield engine.url
    _stop(engine)


def test_real_vllm_embedding_model_is_healthy(vllm_embedding_server: str) -> None:
    """Before: only chat was tried, so an embedding deployment was reported unhealthy."""
    r = run(f"vllm={vllm_embedding_server}", "--json", "--no-diagnose")
    doc = doc_of(r)
    assert r.returncode == 0, r.stdout
    c = rows(doc)
    assert c["completion"]["status"] == "skip" and "smol-embed is an embedding model (HTTP 404" in \
        c["completion"]["reason"]
    assert c["embeddings"]["status"] == "pass" and "576-dimensional vector" in c["embeddings"]["reason"]
    assert c["metrics"]["status"] == "pass"


def test_ollama_embedding_model() -> None:
    from doubles.ollama_double import serve

    server = serve(models=[MODEL], embedding=["nomic-embed-text"])
    try:
        r = run(f"ollama=http://127.0.0.1:{server.server_address[1]}", "--model", "nomic-embed-text", "--json",
                "--no-diagnose")
        doc = doc_of(r)
        assert r.returncode == 0, doc
        assert rows(doc)["embeddings"]["status"] == "pass"
    finally:
        server.shutdown()
        server.server_close()


# -- structured output and versions on the real engines --------------------------------------------------
def test_structured_output_and_versions_on_real_engines(vllm_server, llamacpp_server, ollama_double) -> None:
    r = run(f"vllm={vllm_server.url}", f"llamacpp={llamacpp_server.url}", f"ollama={ollama_double.url}",
            "--model", MODEL, "--json", "--no-diagnose", *SHARED, timeout=600)
    doc = doc_of(r)
    assert r.returncode == 0, r.stdout
    by = {e["engine"]: e for e in doc["endpoints"]}
    for engine in ("vllm", "llamacpp", "ollama"):
        checks = {c["name"]: c for c in by[engine]["checks"]}
        row = checks["structured_output"]
        assert row["status"] == "pass", (engine, row)
        assert "embeddings" not in checks and checks["completion"]["status"] == "pass"  # chat models stay chat
        assert json.loads(row["reason"].split(": ", 1)[1]) == {"answer": 4} or engine != "ollama"
    assert by["vllm"]["version"].startswith("vLLM 0.")
    assert by["llamacpp"]["version"].startswith("llama.cpp b")
    assert by["ollama"]["version"] == "Ollama 0.12.6"


def test_structured_output_that_does_not_validate(faulty_server) -> None:
    r = run(f"vllm={faulty_server}/badjson", "--json", "--no-diagnose", "--timeout", "5")
    assert r.returncode == 1
    row = rows(doc_of(r))["structured_output"]
    assert row["status"] == "fail" and "the answer is not JSON: 'four'" in row["reason"]
    assert run(f"openai={faulty_server}/badjson", "--no-capabilities", "--no-diagnose").returncode == 0


# -- 5: partial GPU offload, and no arbitrary model loaded -----------------------------------------------
def test_partial_offload() -> None:
    from doubles.ollama_double import serve

    server = serve(models=[MODEL], vram_fraction=0.52)
    url = f"ollama=http://127.0.0.1:{server.server_address[1]}"
    try:
        r = run(url, "--expect-gpu", "--json", "--no-diagnose")
        assert r.returncode == 1
        row = rows(doc_of(r))["gpu_residency"]
        assert row["status"] == "fail" and "partial GPU offload: 48%/52% CPU/GPU" in row["reason"]
        r = run(url, "--json", "--no-diagnose")
        assert r.returncode == 0
        assert rows(doc_of(r))["gpu_residency"]["status"] == "warn"
        r = run(url, "--no-expect-gpu", "--json", "--no-diagnose")
        assert rows(doc_of(r))["gpu_residency"]["status"] == "pass"
    finally:
        server.shutdown()
        server.server_close()


def test_loaded_model_preferred_over_the_first_tag() -> None:
    from doubles.ollama_double import serve

    server = serve(models=["aaa-huge:70b", MODEL], preload=[MODEL])
    try:
        r = run(f"ollama=http://127.0.0.1:{server.server_address[1]}", "--json", "--no-diagnose")
        doc = doc_of(r)
        assert r.returncode == 0, doc
        assert doc["endpoints"][0]["model"] == MODEL
        assert "aaa-huge:70b" not in server.state.loads  # never loaded (and nothing evicted for it)
        assert "already loaded" in rows(doc)["readiness"]["reason"]
    finally:
        server.shutdown()
        server.server_close()


# -- 4: internal CAs, --ca-bundle, SSL_CERT_FILE, --insecure, certificate expiry --------------------------
@pytest.fixture(scope="module")
def internal_ca(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An internal CA and two server certificates for 127.0.0.1: one valid 90 days, one expiring in 5."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("ca")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gik test lab CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out = {"ca": d / "ca.pem"}
    for label, days in (("long", 90), ("short", 5)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        (d / f"{label}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        out[label] = d / f"{label}.pem"
    return out


@pytest.fixture(scope="module")
def tls_servers(internal_ca: dict[str, Path]) -> Iterator[dict[str, str]]:
    from doubles.faulty_server import serve

    servers, urls = [], {}
    for label in ("long", "short"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(internal_ca[label])
        s = serve(ssl_context=ctx)
        servers.append(s)
        urls[label] = f"https://127.0.0.1:{s.server_address[1]}"
    yield urls
    for s in servers:
        s.shutdown()
        s.server_close()


def test_internal_ca(internal_ca: dict[str, Path], tls_servers: dict[str, str]) -> None:
    ep = f"openai={tls_servers['long']}/ok"
    plain = run(ep, "--json", "--no-diagnose", "--timeout", "5")
    assert plain.returncode == 1
    assert "TLS error with 127.0.0.1" in json.dumps(doc_of(plain))
    ways = ((["--ca-bundle", str(internal_ca["ca"])], None), ([], {"SSL_CERT_FILE": str(internal_ca["ca"])}))
    for extra, env in ways:
        r = run(ep, *extra, "--json", "--no-diagnose", "--timeout", "5", env=env)
        doc = doc_of(r)
        assert r.returncode == 0, (extra, env, doc)
        tls = rows(doc)["tls"]
        assert tls["status"] == "pass" and "certificate valid until" in tls["reason"]
    insecure = run(ep, "--insecure", "--json", "--no-diagnose", "--timeout", "5")
    assert insecure.returncode == 0
    assert insecure.stderr.strip().splitlines() == [
        "warning: --insecure: TLS certificates are not verified; anyone on the path can impersonate an https endpoint"]
    assert rows(doc_of(insecure))["tls"]["status"] == "skip"


def test_certificate_expiring_soon_is_a_warning(internal_ca: dict[str, Path], tls_servers: dict[str, str]) -> None:
    r = run(f"openai={tls_servers['short']}/ok", "--ca-bundle", str(internal_ca["ca"]), "--json", "--no-diagnose")
    doc = doc_of(r)
    assert r.returncode == 0
    tls = rows(doc)["tls"]
    assert tls["status"] == "warn" and re.search(r"certificate expires in [45]\.\d days \(\d{4}-\d\d-\d\d\): renew",
                                                  tls["reason"]), tls


def test_smoke_bench_trusts_the_same_ca(internal_ca: dict[str, Path], tls_servers: dict[str, str]) -> None:
    args = [str(BIN / "smoke-bench"), f"openai={tls_servers['long']}/ok", "--num-prompts", "2", "--no-gpu-sampling",
            "--timeout", "5"]
    bad = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "TLS error" in bad.stderr + bad.stdout and "Traceback" not in bad.stderr
    ok = subprocess.run([*args, "--ca-bundle", str(internal_ca["ca"])], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr


# -- CI and monitoring outputs ---------------------------------------------------------------------------
def test_junit_and_prometheus_files(ollama_double, faulty_server, tmp_path: Path) -> None:
    junit, prom = tmp_path / "hc.xml", tmp_path / "hc.prom"
    r = run(f"ollama={ollama_double.url}", f"vllm={faulty_server}/empty", "--junit", str(junit), "--prometheus",
            str(prom), "--no-diagnose", "--timeout", "5")
    assert r.returncode == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    port = faulty_server.rsplit(":", 1)[1]
    assert cases[(f"vllm@127.0.0.1:{port}", "completion")].find("failure") is not None
    assert cases[(f"ollama@127.0.0.1:{ollama_double.url.rsplit(':', 1)[1]}", "completion")].find("failure") is None
    text = prom.read_text()
    assert f'gik_healthcheck_endpoint_up{{endpoint="vllm@127.0.0.1:{port}",engine="vllm"' in text
    assert 'check="completion"} 0' in text and 'check="completion"} 1' in text
    assert not list(tmp_path.glob("*.tmp.*"))  # written atomically


def test_bad_output_path_is_found_before_any_request(faulty_server, tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run(f"vllm={faulty_server}/hang", "--junit", str(tmp_path / "no" / "dir" / "r.xml"), "--timeout", "20")
    assert r.returncode == 2 and time.monotonic() - t0 < 15  # no request to the hanging server
    assert r.stderr.strip().splitlines() == [f"healthcheck: --junit {tmp_path}/no/dir/r.xml: directory "
                                             f"{tmp_path}/no/dir does not exist"]


# -- 8: numbers and selectors, validated before the first request ----------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["--timeout", "nan"], "argument --timeout: 'nan' is not a number"),
    (["--timeout", "inf"], "argument --timeout: 'inf' must be a finite number"),
    (["--wait", "nan"], "'nan' is not a number"),
    (["--max-tokens", "1.5"], "'1.5' is not a whole number"),
    (["--group", "gpu_hosts"], "--group needs --inventory"),
    (["--host", "gpu01"], "--host needs --inventory"),
    (["--ca-bundle", "/x.pem", "--insecure"], "not allowed with argument"),
])
def test_usage_errors_in_one_line(args: list[str], needle: str) -> None:
    r = run("vllm=http://127.0.0.1:9", *args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_help_states_exit_codes() -> None:
    for exe in ("healthcheck", "smoke-bench", "compose-preflight", "prepare-model"):
        r = subprocess.run([str(BIN / exe), "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "Exit codes: 0" in " ".join(r.stdout.split()), exe
        v = subprocess.run([str(BIN / exe), "--version"], capture_output=True, text=True, timeout=60)
        assert v.returncode == 0 and v.stdout.startswith(f"{exe} "), (exe, v.stdout, v.stderr)


# -- 10: the other CLIs ----------------------------------------------------------------------------------
def test_other_clis_one_line_errors_and_codes(tmp_path: Path) -> None:
    def cli(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / a[0]), *a[1:]], capture_output=True, text=True, timeout=60)
    for argv, code, needle in (
        (("prepare-model", str(tmp_path / "missing.gguf"), str(tmp_path / "out")), 2, "GGUF file not found"),
        (("prepare-model",), 2, "the following arguments are required"),
        (("prepare-model", "a.gguf", "out", "--dtype", "int3"), 2, "invalid choice: 'int3'"),
        (("compose-preflight", "--bogus"), 2, "unrecognized arguments: --bogus"),
        (("compose-preflight", str(tmp_path / "nope")), 2, "is not a directory"),
        (("compose-preflight", str(tmp_path), "--services", "tgi"), 2, "unknown service(s) tgi"),
    ):
        r = cli(*argv)
        assert r.returncode == code and needle in r.stderr, (argv, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    r = cli("compose-preflight", str(tmp_path), "--services", "vllm")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_output_that_the_terminal_cannot_encode() -> None:
    """LANG=C shells and ASCII pipes: a non-ASCII host or server message is escaped, never a traceback."""
    for extra in ([], ["--json"]):
        r = run("vllm=http://\u00e9.invalid:9", "--no-diagnose", "--timeout", "3", *extra,
                env={"PYTHONIOENCODING": "ascii", "LC_ALL": "C", "LANG": "C"})
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "DNS lookup failed" in r.stdout + r.stderr
