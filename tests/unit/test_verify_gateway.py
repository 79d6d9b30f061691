"""verify and the gateway: the one healthcheck command line with a gateway endpoint (a host's own gateway beside its
engines, the lab gateway alone), the lab report built from what verify writes for a gateway host, and the check that
stops verify before any change when the controller cannot reach a service published on loopback only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from healthchecks import lab_report as lr
from healthchecks import stack

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent
KIT = Path(__file__).resolve().parents[2]
CAT = stack.load()


def commands(**over: Any) -> dict[str, list[str]]:
    engines = over.pop("engines", ["vllm", "llamacpp"])
    base: dict[str, Any] = {
        "bin_dir": "/kit/bin", "address": "10.0.0.5", "engines": engines,
        "ports": {e: CAT.engines[e].port for e in engines},
        "models": {e: CAT.engines[e].model_setting.default for e in engines},
        "key_files": {}, "gpu": True, "reports": "/r/h", "wait": 5, "request_timeout": 7, "smoke_bench": True,
        "num_prompts": 2, "concurrency": 1, "output_len": 4}
    return stack.verify_commands(**{**base, **over})


GW = {"url": "http://10.0.0.5:4000", "model": "smollm2:135m", "key_file": "/tmp/gik-gateway-key-x"}


def test_gateway_url() -> None:
    assert stack.gateway_url("10.0.0.5", "4000") == "http://10.0.0.5:4000"
    assert stack.gateway_url("gw.lab", 443, tls=True) == "https://gw.lab:443"
    assert stack.gateway_url("fd00::1", 4000) == "http://[fd00::1]:4000"


def test_a_host_gateway_joins_its_engines_in_one_healthcheck_run_but_not_the_benchmark() -> None:
    cmd = commands(gateway=GW)
    hc = cmd["healthcheck"]
    # every NAME=URL first (healthcheck's positionals do not follow its options), then the options
    assert hc[1:4] == ["vllm=http://10.0.0.5:8000", "llamacpp=http://10.0.0.5:8080", "gateway=http://10.0.0.5:4000"]
    i = hc.index("--model", hc.index("gateway=smollm2:135m") - 1)
    assert hc[i:i + 4] == ["--model", "gateway=smollm2:135m", "--api-key-file", "gateway=/tmp/gik-gateway-key-x"]
    assert "--ca-bundle" not in hc
    assert not any("gateway" in a for a in cmd["smoke-bench"])  # smoke-bench measures the engines themselves
    assert commands() == {**cmd, "healthcheck": hc[:3] + hc[4:i] + hc[i + 4:]}  # nothing else moves


def test_the_lab_gateway_alone_no_benchmark_and_the_lab_ca() -> None:
    cmd = commands(engines=[], gateway={**GW, "url": "https://gw.lab:4000"}, gpu=False, ca_bundle="/etc/lab-ca.pem")
    assert set(cmd) == {"healthcheck"}
    assert cmd["healthcheck"] == [
        "/kit/bin/healthcheck", "gateway=https://gw.lab:4000", "--model", "gateway=smollm2:135m",
        "--api-key-file", "gateway=/tmp/gik-gateway-key-x", "--wait", "5", "--timeout", "7", "--no-expect-gpu",
        "--ca-bundle", "/etc/lab-ca.pem", "--json", "--no-diagnose"]
    # no key file (none copied): no --api-key-file, never an empty one
    assert "--api-key-file" not in commands(engines=[], gateway={**GW, "key_file": ""})["healthcheck"]


def test_the_real_healthcheck_takes_the_argv_and_reports_the_gateway_into_the_lab_report(tmp_path: Path) -> None:
    """The argv verify runs for a lab gateway (nothing listens: a refused port) -> healthcheck --json exit 1 with
    the gateway endpoint; the lab report built from it and another host's healthy result keeps both."""
    key = tmp_path / "key"
    key.write_text("sk-" + "x" * 20 + "\n")
    key.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = {"url": stack.gateway_url("127.0.0.1", port), "model": "m", "key_file": str(key)}
    # a host's own gateway beside its engines: the real healthcheck takes that argv too (all endpoints checked)
    both = commands(bin_dir=str(BIN), engines=["vllm", "llamacpp"], address="127.0.0.1", ports={"vllm": port,
                    "llamacpp": port}, gpu=False, wait=1, request_timeout=2, gateway=gateway)
    hc = subprocess.run(both["healthcheck"], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "NO_COLOR": "1"})
    assert hc.returncode == 1, hc.stderr
    assert sorted(e["engine"] for e in json.loads(hc.stdout)["endpoints"]) == ["gateway", "llamacpp", "vllm"]
    cmd = commands(bin_dir=str(BIN), engines=[], gpu=False, wait=1, request_timeout=2, gateway=gateway)
    hc = subprocess.run(cmd["healthcheck"], capture_output=True, text=True, timeout=120,
                        env={**os.environ, "NO_COLOR": "1"})
    assert hc.returncode == 1, hc.stderr
    assert "x" * 20 not in hc.stdout + hc.stderr
    doc = json.loads(hc.stdout)
    assert [e["engine"] for e in doc["endpoints"]] == ["gateway"]
    results = tmp_path / "reports"
    (results / "lab3").mkdir(parents=True)
    (results / "lab3" / "healthcheck.json").write_text(hc.stdout + "\n")
    (results / "lab3" / "host.json").write_text(json.dumps(
        {"host": "lab3", "verified": True, "engines": [], "gpu": False, "reboot_pending": False,
         "healthcheck_rc": 1, "failures": []}))
    (results / "lab1").mkdir()
    (results / "lab1" / "healthcheck.json").write_text(json.dumps({"healthy": True, "endpoints": [
        {"name": "llamacpp@127.0.0.1:8080", "engine": "llamacpp", "url": "http://127.0.0.1:8080", "model": "m",
         "checks": [{"name": "liveness", "status": "pass", "reason": "200"}], "healthy": True}]}))
    rep = lr.to_json(lr.collect(results, hosts=["lab1"], failed={"lab3": "failed or unreachable earlier"}))
    hosts = {h["name"]: h for h in rep["hosts"]}
    assert hosts["lab1"]["state"] == lr.HEALTHY
    assert hosts["lab3"]["state"] == lr.UNHEALTHY and hosts["lab3"]["engines"][0]["engine"] == "gateway"
    assert rep["gateway"] is not None and rep["gateway"]["endpoints"] == [f"lab3/{doc['endpoints'][0]['name']}"]


def test_unreachable_names_the_setting_of_each_service_on_loopback() -> None:
    defaults = CAT.ansible_defaults()
    assert stack.unreachable(defaults, "127.0.0.1", gateway=True) == []  # the controller is the host: reachable
    assert stack.unreachable(defaults, "localhost") == []
    # the host's gateway on loopback too: nothing of the host can be reached from the controller
    lines = stack.unreachable({**defaults, "inference_stack_engines": ["vllm", "ollama"]}, "10.0.0.5",
                              gateway=True, host="gpu01")
    assert len(lines) == 3 and all(x.startswith("gpu01: ") for x in lines)
    assert "inference_stack_bind_address=127.0.0.1" in lines[0] and "vllm" in lines[0]
    assert "OLLAMA_BIND_ADDRESS" in lines[1] and "gateway_enabled: true" in lines[1]
    assert "gateway_bind_address=127.0.0.1" in lines[2]
    assert all("--skip-tags verify" in x for x in lines)
    # no gateway on the host: its loopback engines name the gateway settings as the way
    alone = stack.unreachable({**defaults, "inference_stack_engines": ["llamacpp"]}, "10.0.0.5", host="gpu02")
    assert len(alone) == 1 and "llamacpp" in alone[0] and "gateway_bind_address" in alone[0]
    wide = {**defaults, "inference_stack_engines": ["vllm"], "inference_stack_bind_address": "0.0.0.0",
            "gateway_bind_address": "10.0.0.5"}
    assert stack.unreachable(wide, "10.0.0.5", gateway=True) == []
    assert stack.unreachable(wide, "gpu01.lab") == []  # a name: reached elsewhere, the engines are published
    # the lab gateway alone: only the gateway counts (its host's engines are not verified there)
    only = stack.unreachable(defaults, "10.0.0.9", lab_gateway=True)
    assert len(only) == 1 and "gateway_bind_address" in only[0]
    assert stack.unreachable({**defaults, "gateway_bind_address": "0.0.0.0"}, "10.0.0.9", lab_gateway=True) == []


def _play(tmp: Path, hosts: dict[str, dict[str, Any]], lab: str = "") -> subprocess.CompletedProcess[str]:
    inv = tmp / "inv.yml"
    gw = {lab: hosts.pop(lab)} if lab else {}
    inv.write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts},
                                                        "gateway_hosts": {"hosts": gw}}}}))
    (tmp / "pb.yml").write_text(yaml.safe_dump([{
        "hosts": "gpu_hosts:gateway_hosts", "gather_facts": False, "tasks": [
            {"name": "validate", "ansible.builtin.include_role": {"name": "verify", "tasks_from": "validate"},
             "vars": {"verify_lab_gateway": "{{ inventory_hostname in groups['gateway_hosts'] }}"}}]}]))
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(tmp / "pb.yml")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ANSIBLE_ROLES_PATH": str(KIT / "roles"), "ANSIBLE_FORCE_COLOR": "0"})


def test_verify_validate_stops_an_unreachable_host_naming_the_setting(tmp_path: Path) -> None:
    """roles/verify tasks/validate.yml (site.yml's first plays run it before any change), a real ansible-playbook:
    the INI-like text values are converted first; only the unreachable hosts fail, each naming its setting."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    out = _play(tmp_path, {
        "near": {**local, "ansible_host": "127.0.0.1", "gateway_enabled": "true"},
        "far": {**local, "ansible_host": "10.1.2.3", "inference_stack_engines": ["vllm"]},
        "open": {**local, "ansible_host": "10.1.2.4", "inference_stack_engines": ["vllm"],
                 "inference_stack_bind_address": "0.0.0.0", "gateway_enabled": True, "gateway_bind_address": "0.0.0.0"},
        "gw": {**local, "ansible_host": "10.1.2.5", "gateway_port": "4100"}}, lab="gw")
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-3000:]
    recap = dict(
        (line.split()[0], line) for line in out.stdout.splitlines() if " : ok=" in line)
    assert "failed=1" in recap["far"] and "failed=1" in recap["gw"], recap
    assert "failed=0" in recap["near"] and "failed=0" in recap["open"], recap
    assert "far: verify runs on the controller and reaches this host at 10.1.2.3, but vllm is published on " \
           "127.0.0.1:8000 only (inference_stack_bind_address=127.0.0.1)" in text
    assert "gw: verify runs on the controller and reaches this host at 10.1.2.5, but gateway is published on " \
           "127.0.0.1:4100 only (gateway_bind_address=127.0.0.1)" in text
    assert "Traceback" not in text


def test_verify_reaches_a_service_at_its_bind_address_where_that_is_one_address() -> None:
    """The engines published on the host's lab address (inference_stack_bind_address): verify goes there, not to
    ansible_host (an SSH port forward, a management address); a wildcard bind: ansible_host."""
    assert stack.reach_address("0.0.0.0", "10.0.0.5") == "10.0.0.5"
    assert stack.reach_address("::", "gpu01.lab") == "gpu01.lab"
    assert stack.reach_address("172.18.0.1", "127.0.0.1") == "172.18.0.1"
    assert stack.reach_address("127.0.0.2", "127.0.0.1") == "127.0.0.2"
    assert stack.reach_address("127.0.0.1", "10.0.0.5") == "10.0.0.5"  # unreachable() stops this before a change
    defaults = CAT.ansible_defaults()
    got = stack.verify_addresses({**defaults, "inference_stack_engines": ["vllm", "ollama"],
                                  "inference_stack_bind_address": "172.18.0.1", "gateway_bind_address": "0.0.0.0"},
                                 "127.0.0.1", gateway=True)
    assert got == {"vllm": "172.18.0.1", "ollama": "127.0.0.1", "gateway": "127.0.0.1"}
    cmd = commands(address="127.0.0.1", addresses={"vllm": "172.18.0.1"})["healthcheck"]
    assert cmd[1:3] == ["vllm=http://172.18.0.1:8000", "llamacpp=http://127.0.0.1:8080"]


def test_engines_on_loopback_are_verified_through_the_hosts_gateway() -> None:
    """The lab README recommends (inventory/: engines on 127.0.0.1, each host's gateway beyond loopback): verify
    cannot reach the engines from the controller, so it checks them through the host's gateway (a real completion
    per route), and the settings check does not stop the host."""
    values = {**CAT.ansible_defaults(), "inference_stack_engines": ["vllm", "llamacpp", "ollama"],
              "inference_stack_bind_address": "127.0.0.1", "gateway_bind_address": "0.0.0.0"}
    assert stack.unreachable(values, "10.0.0.5", gateway=True, host="gpu01") == []
    got = stack.verify_addresses(values, "10.0.0.5", gateway=True)
    assert got == {"vllm": "", "llamacpp": "", "ollama": "", "gateway": "10.0.0.5"}
    cmd = commands(engines=["vllm", "llamacpp", "ollama"], addresses=got, gateway=GW)
    hc = cmd["healthcheck"]
    assert [a for a in hc if "=http" in a] == ["gateway=http://10.0.0.5:4000"]  # no engine row it cannot reach
    assert "smoke-bench" not in cmd  # nothing measured directly
    # one engine published beyond loopback (llama.cpp keyed): that one directly, the others through the gateway
    mixed = stack.verify_addresses({**values, "inference_stack_engines": ["vllm", "ollama"]}, "10.0.0.5",
                                   gateway=True)
    assert mixed["vllm"] == "" and mixed["ollama"] == ""
    # the same host reached on loopback (the controller is the host): every engine directly
    near = stack.verify_addresses(values, "127.0.0.1", gateway=True)
    assert "" not in near.values()
    # a gateway on loopback fronts nothing the controller can reach
    shut = {**values, "gateway_bind_address": "127.0.0.1"}
    assert "" not in stack.verify_addresses(shut, "10.0.0.5", gateway=True).values()
    assert len(stack.unreachable(shut, "10.0.0.5", gateway=True)) == 4
