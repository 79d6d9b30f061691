"""site.yml writes one report for the lab: a real verify run (roles/verify: healthcheck and smoke-bench from the
controller against a real llama-server) over two inventory hosts, one whose engine does not answer; the verify role
writes every host's results and the lab report before it fails that host, so the healthy host's results are in it;
then site.yml's last play (tag lab_report) writes it again from the fetched results, once, on the controller.

Both "hosts" are this machine (connection local), the inventory's two names give them two result folders and two
ports: host1's is the real llama-server's, host2's has nothing behind it."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import dump_dom
from conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def playbook(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", str(inventory), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "GIK_BIN": str(BIN)})


def recaps(out: str) -> dict[str, dict[str, int]]:
    found = re.findall(r"^(host\d)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
    assert found, out[-3000:]
    return {h: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, v), strict=True)) for h, *v in found}


@pytest.fixture(scope="module")
def lab(llamacpp_server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("lab-report-e2e")
    inv = tmp / "inventory"
    (inv / "group_vars" / "gpu_hosts").mkdir(parents=True)
    port = int(llamacpp_server.url.rsplit(":", 1)[1])
    local = {"ansible_connection": "local", "ansible_host": "localhost", "ansible_python_interpreter": sys.executable}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {
        "host1": {**local, "inference_stack_llamacpp_port": port},
        "host2": {**local, "inference_stack_llamacpp_port": free_port()}}}}}}))
    settings = {"inference_stack_gpu": False, "inference_stack_engines": ["llamacpp"],
                "inference_stack_bind_address": "127.0.0.1",
                "inference_stack_project_name": "gik-lab-report-" + secrets.token_hex(3),
                "inference_stack_dir": str(tmp / "opt"), "preflight_disk_path": "/", "preflight_min_free_disk_gb": 1,
                "preflight_require_vault": False, "vault_hf_token": "", "vault_vllm_api_key": "",
                "verify_wait": 5, "verify_request_timeout": 90, "verify_num_prompts": 2, "verify_concurrency": 2,
                "verify_output_len": 8, "verify_reports_dir": str(tmp / "reports")}
    # verify_request_timeout 90 (healthcheck --timeout): host1's engine is the session's llama-server, shared with the
    # load tests of both xdist workers on CI's two cores, where a request to it took longer than 30 s (the CI run of
    # a1fef5c); what verify writes, not latency, is tested. verify_wait 5 keeps host2's failure quick.
    (inv / "group_vars" / "gpu_hosts" / "main.yml").write_text(yaml.safe_dump(settings))
    return {"inventory": inv / "hosts.yml", "reports": tmp / "reports"}


def test_verify_writes_every_hosts_results_and_the_lab_report_before_failing_one(lab: dict[str, Any]) -> None:
    reports: Path = lab["reports"]
    t0 = time.monotonic()
    r = playbook(lab["inventory"], "--tags", "verify")
    took = time.monotonic() - t0
    print(f"\nsite.yml --tags verify (2 hosts, one unhealthy): {took:.1f}s")
    assert r.returncode == 2, r.stdout[-6000:] + r.stderr[-2000:]
    rc = recaps(r.stdout)
    assert rc["host1"]["failed"] == 0 and rc["host2"]["failed"] == 1, rc
    fatal = r"fatal: \[host2\]: FAILED! => \{[^\n]*llamacpp@127\.0\.0\.1:\d+: liveness: "
    assert re.search(fatal, r.stdout), r.stdout[-4000:]
    # rolling batches (canary host1, then host2): the lab report after each batch, once, on the controller
    assert r.stdout.count("TASK [verify : Write the lab report (lab.html, lab.json, lab-junit.xml)]") == 2
    doc = json.loads((reports / "lab.json").read_text())
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert list(hosts) == ["host1", "host2"] and doc["healthy"] is False
    assert hosts["host1"]["state"] == "healthy" and hosts["host1"]["engines"][0]["engine"] == "llamacpp"
    assert hosts["host1"]["links"]["page"] == "host1/bench.html" and (reports / "host1" / "bench.html").is_file()
    assert hosts["host2"]["state"] == "unhealthy"
    assert hosts["host2"]["engines"][0]["why"].startswith("liveness: ")
    # host.json as the role writes it
    meta = json.loads((reports / "host1" / "host.json").read_text())
    assert meta["verified"] is True and meta["healthcheck_rc"] == 0 and meta["smoke_bench_rc"] == 0
    assert meta["reboot_pending"] is False and meta["engines"] == ["llamacpp"] and meta["failures"] == []
    meta2 = json.loads((reports / "host2" / "host.json").read_text())
    assert meta2["healthcheck_rc"] == 1 and meta2["smoke_bench_rc"] is None  # no benchmark of an unhealthy host
    cases = {(c.get("classname"), c.get("name")): c for c in ET.parse(reports / "lab-junit.xml").iter("testcase")}
    assert set(cases) == {("host1", "llamacpp"), ("host2", "llamacpp")}
    assert cases[("host2", "llamacpp")].find("failure") is not None
    assert cases[("host1", "llamacpp")].find("failure") is None
    dom = dump_dom(reports / "lab.html")
    assert re.findall(r'<tr class="verdict ([a-z-]+)">', dom) == ["healthy", "unhealthy"]


def test_site_yml_last_play_writes_the_lab_report_once_on_the_controller(lab: dict[str, Any]) -> None:
    """The last play alone (--tags lab_report) over the results the verify run above fetched: the same report,
    rewritten, nothing changed, no host contacted beyond the settings check."""
    reports: Path = lab["reports"]
    if not (reports / "lab.json").is_file():
        pytest.fail("needs the verify run of the test above", pytrace=False)
    before = json.loads((reports / "lab.json").read_text())
    (reports / "lab.json").unlink()
    t0 = time.monotonic()
    r = playbook(lab["inventory"], "--tags", "lab_report")
    print(f"\nsite.yml --tags lab_report: {time.monotonic() - t0:.1f}s")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "PLAY [Write one report for the whole lab]" in r.stdout
    assert "TASK [verify : Run healthcheck" not in r.stdout
    assert re.search(r"TASK \[verify : Write the lab report \(lab.html, lab.json, lab-junit.xml\)\][^\n]*\n+"
                     r"ok: \[host1 -> localhost\]\n", r.stdout), r.stdout[-4000:]
    assert all(v["changed"] == 0 and v["failed"] == 0 for v in recaps(r.stdout).values())
    after = json.loads((reports / "lab.json").read_text())
    assert after["hosts"] == before["hosts"] and after["summary"] == before["summary"]
