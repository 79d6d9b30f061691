"""healthcheck against inputs a review found breaking it: a server that keeps a request alive with a byte now and
then, credentials in a URL, server text with terminal escapes, report paths that are links or devices, the same
endpoint twice, and inventories with odd addresses, ports and models. Each ends as a verdict or one line with
the right exit code; no result beside it is lost; no secret is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import check_rows as rows
from conftest import run_healthcheck as run

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def test_a_trickling_server_fails_its_rows_and_the_run_ends(faulty_server: str) -> None:
    """Every read gets a byte within --timeout, the answer never comes: each row ends within 3 x --timeout and
    the healthy endpoint beside it is reported (before: the run never ended, nothing was printed)."""
    r = run(f"vllm={faulty_server}/trickle", f"openai={faulty_server}/ok", "--json", "--no-diagnose",
            "--timeout", "1", timeout=90)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    bad = rows(doc, 0)
    for name in ("completion", "stream"):
        assert bad[name]["status"] == "fail"
        assert "no complete answer within 3s (3 x --timeout)" in bad[name]["reason"], bad[name]
    assert doc["endpoints"][1]["healthy"] is True


def test_credentials_in_a_url_are_refused_without_printing_them(faulty_server: str) -> None:
    url = faulty_server.replace("http://", "http://admin:S3cretPw@") + "/ok"
    for args in ([f"vllm={url}"], [url, "--json"]):
        r = run(*args)
        assert r.returncode == 2 and "S3cretPw" not in r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and "carries user:password" in r.stderr and "http://***@127.0.0.1" in r.stderr


@pytest.mark.parametrize(("url", "needle"), [
    ("http://127.0.0.1:1?x=1", "no ?query or #fragment"),
    ("http://" + "a" * 70 + ".example:80", "longer than 63 characters"),
    ("http://a..b:80", "empty label"),
    ("http://127.0.0.1:99999", "malformed"),
])
def test_urls_that_cannot_work_are_named(url: str, needle: str) -> None:
    for cli in ("healthcheck", "smoke-bench"):
        extra = ["--num-prompts", "1"] if cli == "smoke-bench" else []
        r = subprocess.run([str(BIN / cli), f"vllm={url}", *extra], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (cli, r.stderr)


def test_server_text_with_terminal_escapes(faulty_server: str, tmp_path: Path) -> None:
    junit, prom = tmp_path / "hc.xml", tmp_path / "hc.prom"
    r = run(f"openai={faulty_server}/ctrlid", "--no-diagnose", "--timeout", "5", "--junit", str(junit),
            "--prometheus", str(prom))
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    assert "m\\x1b[31mRED\\x07\\x00" in r.stdout.replace("\n", "").replace("│", "").replace(" ", "")
    root = ET.parse(junit).getroot()  # well-formed XML (a NUL or ESC made it unparseable)
    models = {p.get("value") for p in root.iter("property") if p.get("name") == "model"}
    assert models == {"m\\x1b[31mRED\\x07\\x00"}
    assert "\x1b" not in prom.read_text()
    as_json = run(f"openai={faulty_server}/ctrlid", "--no-diagnose", "--timeout", "5", "--json")
    assert json.loads(as_json.stdout)["endpoints"][0]["models"] == ["m\x1b[31mRED\x07\x00"]  # JSON keeps it as sent


def test_report_files_through_a_symlink_and_a_device(faulty_server: str, tmp_path: Path) -> None:
    target = tmp_path / "real.xml"
    target.write_text("old")
    link = tmp_path / "link.xml"
    link.symlink_to(target)
    fifo = tmp_path / "prom.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    r = run(f"openai={faulty_server}/ok", "--no-diagnose", "--timeout", "5", "--junit", str(link),
            "--prometheus", str(fifo))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and ET.parse(target).getroot().tag == "testsuites"  # the link kept, its target written
    out, _ = reader.communicate(timeout=30)
    assert "gik_healthcheck_endpoint_up" in out and fifo.exists() and not fifo.is_file()
    assert not list(tmp_path.glob("*.tmp.*"))


def test_the_same_endpoint_twice_and_two_paths_on_one_port(faulty_server: str, tmp_path: Path) -> None:
    prom = tmp_path / "hc.prom"
    r = run(f"openai={faulty_server}/ok", f"openai={faulty_server}/ok/", f"openai={faulty_server}/reasoning",
            "--json", "--no-diagnose", "--timeout", "5", "--prometheus", str(prom))
    assert r.returncode == 0, r.stderr
    assert "is listed twice: checked once" in r.stderr
    port = faulty_server.rsplit(":", 1)[1]
    labels = [e["name"] for e in json.loads(r.stdout)["endpoints"]]
    assert labels == [f"openai@127.0.0.1:{port}/ok", f"openai@127.0.0.1:{port}/reasoning"]
    series = [line.split(" ")[0] for line in prom.read_text().splitlines() if line and not line.startswith("#")]
    assert len(series) == len(set(series))  # a collector rejects duplicate series


def _inventory(tmp_path: Path, hostvars: str) -> Path:
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  children:\n    gpu_hosts:\n      hosts:\n        gpu01:\n" + hostvars)
    return inv


@pytest.mark.parametrize(("hostvars", "needle"), [
    ("          inference_stack_vllm_port: 99999\n", "inference_stack_vllm_port must be a port number (1-65535)"),
    ("          inference_stack_vllm_port: -5\n", "inference_stack_vllm_port must be a port number"),
    ("          inference_stack_vllm_port: 18102.7\n", "inference_stack_vllm_port must be a port number"),
    ("          inference_stack_vllm_served_model_name: [a, b]\n", "must be a model name"),
    ("          healthcheck_address: 127.0.0.1/evil\n", "is not a host name or IP address"),
])
def test_inventory_values_that_cannot_work_are_named(tmp_path: Path, hostvars: str, needle: str) -> None:
    inv = _inventory(tmp_path, "          inference_stack_engines: [vllm]\n" + hostvars)
    for cli in ("healthcheck", "smoke-bench"):
        extra = ["--num-prompts", "1"] if cli == "smoke-bench" else []
        r = subprocess.run([str(BIN / cli), "--inventory", str(inv), *extra], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (cli, r.stderr)
        assert r.stderr.count("\n") == 1 and "gpu01" in r.stderr and needle in r.stderr, (cli, r.stderr)


def test_inventory_ipv6_host_ini_engine_list_and_numeric_model(tmp_path: Path, faulty_server: str) -> None:
    """An IPv6 ansible_host goes in brackets; an INI [vars] engine list arrives as "vllm,llamacpp"; a model
    YAML read as a number is a name."""
    inv = tmp_path / "hosts.ini"
    inv.write_text("[gpu_hosts]\ngpu01 ansible_host=::1 inference_stack_vllm_served_model_name=7\n\n"
                   "[gpu_hosts:vars]\ninference_stack_engines=vllm,llamacpp\ninference_stack_vllm_port=9\n"
                   "inference_stack_llamacpp_port=19\n")
    r = run("--inventory", str(inv), "--json", "--no-diagnose", "--timeout", "2")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr  # nothing listens on ::1 port 9/19
    eps = json.loads(r.stdout)["endpoints"]
    assert [(e["engine"], e["url"]) for e in eps] == [("vllm", "http://[::1]:9"), ("llamacpp", "http://[::1]:19")]
    assert eps[0]["model"] == "7"


def test_a_key_the_server_echoes_is_never_printed_or_saved(faulty_server: str, tmp_path: Path) -> None:
    key = "sk-echo-" + os.urandom(8).hex()
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    ep = f"vllm={faulty_server}/echo401"
    hc = run(ep, "--api-key-file", str(key_file), "--json", "--no-diagnose", "--timeout", "5",
             "--junit", str(tmp_path / "hc.xml"))
    completion = rows(json.loads(hc.stdout))["completion"]
    assert completion["status"] == "fail" and "Incorrect API key provided: Bearer ***" in completion["reason"]
    out = tmp_path / "bench.json"
    sb = subprocess.run([str(BIN / "smoke-bench"), ep, "--api-key-file", str(key_file), "--num-prompts", "2",
                         "--no-gpu-sampling", "--json", str(out), "--html", str(tmp_path / "b.html")],
                        capture_output=True, text=True, timeout=120)
    assert sb.returncode == 1 and "Bearer ***" in sb.stdout + sb.stderr
    for text in (hc.stdout, hc.stderr, sb.stdout, sb.stderr, *(p.read_text() for p in tmp_path.glob("*.*"))):
        assert key not in text or text == key + "\n"


def test_a_key_from_a_pipe_is_read_once(faulty_server: str) -> None:
    """`--api-key-file <(pass show ...)`: a pipe gives its content once; validation and the request share it."""
    key = "sk-pipe-" + os.urandom(8).hex()
    r = subprocess.run([str(BIN / "healthcheck"), f"vllm={faulty_server}/echo401", "--api-key-file", "/dev/stdin",
                        "--json", "--no-diagnose", "--timeout", "5"], input=key + "\n", capture_output=True,
                       text=True, timeout=120)
    assert "is empty" not in r.stderr and key not in r.stdout + r.stderr, r.stderr
    assert "Incorrect API key provided: Bearer ***" in rows(json.loads(r.stdout))["completion"]["reason"]
