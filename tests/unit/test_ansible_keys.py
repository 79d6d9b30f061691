"""llama.cpp keyed by Ansible as vLLM is, verify reading only real key files, and the gateway's proxy settings
(issue 21), decided by the roles' own files: one ansible-playbook run (local connection, one host per case) of
hf_secret (its real tasks: the secret files), inference_stack's .env template task, verify's keyed engines, the
first play's exposure check (roles/preflight's filter over the roles' argument specs) and the gateway role's
validate.yml and gateway.env template task, on a copy of the kit whose roles get one extra task file each."""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VLLM_KEY = "sk-vllm-" + secrets.token_hex(8)
LLAMA_KEY = "sk-llama-" + secrets.token_hex(8)
PROXY_PW = "pw" + secrets.token_hex(6)
MASTER = "sk-master-" + secrets.token_hex(8)

# gpu_hosts: the engines published on every interface (0.0.0.0), with and without keys
HOSTS: dict[str, dict[str, Any]] = {
    "both_keyed": {"inference_stack_engines": ["vllm", "llamacpp"], "vault_vllm_api_key": VLLM_KEY,
                   "vault_llamacpp_api_key": LLAMA_KEY, "gateway_upstream_address": "10.9.0.11"},
    # the role's own variable wins over the vault's, as for vLLM
    "llama_own_var": {"inference_stack_engines": ["llamacpp"], "vault_llamacpp_api_key": "",
                      "hf_secret_llamacpp_api_key": LLAMA_KEY, "gateway_upstream_address": "10.9.0.13"},
    "llama_blank_key": {"inference_stack_engines": ["llamacpp"], "vault_llamacpp_api_key": "  ",
                        "gateway_upstream_address": "10.9.0.15"},
    "vllm_keyed_llama_not": {"inference_stack_engines": ["vllm", "llamacpp"], "vault_vllm_api_key": VLLM_KEY},
}
# gateway_hosts: a lab gateway in front of gpu_hosts, behind the lab's proxy (with credentials) or with none
GATEWAYS: dict[str, dict[str, Any]] = {
    "gw_proxy": {"proxy_http": f"http://lab:{PROXY_PW}@proxy.lab.example:3128",
                 "proxy_https": f"http://lab:{PROXY_PW}@proxy.lab.example:3128",
                 "proxy_no_proxy": "localhost,127.0.0.1,mirror.lab.example"},
    "gw_plain": {},
}


def _walk(tasks: Any) -> Iterator[dict[str, Any]]:
    for t in tasks or []:
        if isinstance(t, dict):
            yield t
            for key in ("block", "rescue", "always"):
                yield from _walk(t.get(key))


def _template_task(role: str, src: str, dest: str) -> dict[str, Any]:
    """The role's own task that renders ``src`` (its mode, diff and no_log as written), writing to ``dest``."""
    found = [t for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml"))
             for t in _walk(yaml.safe_load(path.read_text()))
             if isinstance(t.get("ansible.builtin.template"), dict) and t["ansible.builtin.template"].get("src") == src]
    assert found, f"roles/{role}/tasks/ has no template task for {src}"
    task = copy.deepcopy(found[0])
    for key in ("notify", "when", "register"):
        task.pop(key, None)
    task["ansible.builtin.template"]["dest"] = dest
    task["ansible.builtin.template"].pop("owner", None)
    task["ansible.builtin.template"].pop("group", None)
    return task


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("keys")
    kit = tmp / "kit"
    shutil.copytree(ROOT / "roles", kit / "roles")
    for d in ("healthchecks", "compose"):
        (kit / d).symlink_to(ROOT / d)
    out_expr = "{{ gik_out }}"
    extra = {
        "inference_stack": [_template_task("inference_stack", "env.j2", out_expr + "/.env")],
        "verify": [{"name": "Keyed engines", "ansible.builtin.copy": {
            "content": "{{ verify_keyed_engines | to_json }}", "dest": out_expr + "/keyed.json", "mode": "0644"}}],
        "preflight": [{"name": "Exposure", "ansible.builtin.copy": {
            "content": "{{ hostvars[inventory_hostname] | gik_exposure_refusals(preflight_all_options, "
                       "preflight_allow_unauthenticated | bool) | to_json }}",
            "dest": out_expr + "/exposure.json", "mode": "0644"}}],
        "gateway": [{"ansible.builtin.import_tasks": "validate.yml"},
                    _template_task("gateway", "gateway.env.j2", out_expr + "/gateway.env")],
    }
    for role, tasks in extra.items():
        (kit / "roles" / role / "tasks" / "gik_keys.yml").write_text(yaml.safe_dump(tasks))
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts, gws = {}, {}
    for name, values in HOSTS.items():
        (tmp / name).mkdir()
        hosts[name] = {**values, **local, "gik_out": str(tmp / name), "inference_stack_dir": str(tmp / name / "opt"),
                       "hf_secret_dir": str(tmp / name / "secrets"), "inference_stack_bind_address": "0.0.0.0",
                       "vault_hf_token": "", "inference_stack_files_salt": "0" * 64}
    for name, values in GATEWAYS.items():
        (tmp / name).mkdir()
        gws[name] = {**values, **local, "gik_out": str(tmp / name), "inference_stack_dir": str(tmp / name / "opt"),
                     "vault_gateway_master_key": MASTER, "gateway_mode": "lab",
                     "inference_stack_files_salt": "0" * 64}
    inv = tmp / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts},
                                                         "gateway_hosts": {"hosts": gws}}}}))
    play = [
        {"name": "engine hosts", "hosts": "gpu_hosts", "gather_facts": False, "tasks": [
            {"ansible.builtin.import_role": {"name": "preflight", "tasks_from": "gik_keys"}},
            {"ansible.builtin.import_role": {"name": "hf_secret"}},
            {"ansible.builtin.import_role": {"name": "inference_stack", "tasks_from": "gik_keys"}},
            {"ansible.builtin.import_role": {"name": "verify", "tasks_from": "gik_keys"}}]},
        {"name": "gateways", "hosts": "gateway_hosts", "gather_facts": False, "tasks": [
             {"ansible.builtin.import_role": {"name": "gateway", "tasks_from": "gik_keys"}}]},
    ]
    (tmp / "keys.yml").write_text(yaml.safe_dump(play))
    argv = [str(BIN / "ansible-playbook"), "-i", str(inv), str(tmp / "keys.yml"), "--diff"]
    environ = {**os.environ, "ANSIBLE_ROLES_PATH": str(kit / "roles"), "ANSIBLE_FORCE_COLOR": "0"}
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environ)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # a second run where every file holds a key or the proxy's password: nothing changes
    again = subprocess.run([*argv, "--limit", "both_keyed,gw_proxy"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, env=environ)
    assert again.returncode == 0, again.stdout[-4000:]
    return {"tmp": tmp, "out": r.stdout + r.stderr, "again": again.stdout}


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


def test_llamacpp_key_file_is_written_root_only_and_named_by_the_env(run: dict[str, Any]) -> None:
    for name, values in HOSTS.items():
        d = run["tmp"] / name
        key = str(values.get("hf_secret_llamacpp_api_key") or values.get("vault_llamacpp_api_key") or "")
        f = d / "secrets" / "llamacpp_api_key"
        st = f.stat()
        assert stat.S_IMODE(st.st_mode) == 0o400 and st.st_uid == 0, (name, oct(st.st_mode))
        # the value only, without the whitespace around it (exposure.key_text): blank is an empty file, no key
        assert f.read_text() == key.strip(), name
        env = _env(d / ".env")
        if key.strip():
            assert env["LLAMACPP_API_KEY_FILE"] == str(f), name
        else:  # compose's default /dev/null: llama-server without a key
            assert "LLAMACPP_API_KEY_FILE" not in env, name
        assert env["VLLM_API_KEY_FILE"] == str(d / "secrets" / "vllm_api_key")


def test_the_exposure_check_accepts_a_keyed_llamacpp_and_names_the_setting_otherwise(run: dict[str, Any]) -> None:
    refused = {name: json.loads((run["tmp"] / name / "exposure.json").read_text()) for name in HOSTS}
    assert refused["llama_own_var"] == []
    # vLLM's key leaves /invocations open: refused beyond loopback keyed or not (the catalogue's api_key_open_routes)
    vllm_line = ("vllm would be published on 0.0.0.0 (inference_stack_bind_address): vLLM's API key does not guard "
                 "every route (/invocations answers without it)")
    assert len(refused["both_keyed"]) == 1 and refused["both_keyed"][0].startswith(vllm_line), refused["both_keyed"]
    assert len(refused["vllm_keyed_llama_not"]) == 2 and refused["vllm_keyed_llama_not"][0].startswith(vllm_line)
    for name, lines in (("llama_blank_key", refused["llama_blank_key"]),
                        ("vllm_keyed_llama_not", refused["vllm_keyed_llama_not"][1:])):
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith("llamacpp would be published on 0.0.0.0 (inference_stack_bind_address) "
                                   "without an API key: give it one (vault_llamacpp_api_key)"), lines
        assert "preflight_allow_unauthenticated: true" in lines[0]


def test_verify_reads_only_the_key_files_of_keyed_engines(run: dict[str, Any]) -> None:
    expected = {"both_keyed": ["vllm", "llamacpp"], "llama_own_var": ["llamacpp"],
                "llama_blank_key": [], "vllm_keyed_llama_not": ["vllm"]}
    for name, engines in expected.items():
        keyed = json.loads((run["tmp"] / name / "keyed.json").read_text())
        assert [k["engine"] for k in keyed] == engines, (name, keyed)
        for k in keyed:  # the very file hf_secret wrote, holding the key (never <secrets>/null)
            text = (run["tmp"] / name / "secrets" / k["file"]).read_text()
            assert text == (LLAMA_KEY if k["engine"] == "llamacpp" else VLLM_KEY), (name, k)


def test_the_gateway_gets_the_labs_proxy_with_its_upstreams_direct(run: dict[str, Any]) -> None:
    f = run["tmp"] / "gw_proxy" / "gateway.env"
    env = _env(f)
    proxy = GATEWAYS["gw_proxy"]["proxy_https"]
    assert env["HTTP_PROXY"] == GATEWAYS["gw_proxy"]["proxy_http"] and env["HTTPS_PROXY"] == proxy
    no_proxy = env["NO_PROXY"].split(",")
    upstreams = [v["gateway_upstream_address"] for v in HOSTS.values() if "gateway_upstream_address" in v]
    for host in ["mirror.lab.example", "localhost", "127.0.0.1", "::1", *upstreams]:
        assert host in no_proxy, (host, no_proxy)
    assert "proxy.lab.example" not in env["NO_PROXY"]
    assert len(no_proxy) == len(set(no_proxy))
    assert stat.S_IMODE(f.stat().st_mode) == 0o600  # the proxy's password is in it
    plain = (run["tmp"] / "gw_plain" / "gateway.env")
    assert "PROXY" not in plain.read_text() and stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_no_key_or_proxy_password_is_printed_and_a_second_run_changes_nothing(run: dict[str, Any]) -> None:
    for secret in (VLLM_KEY, LLAMA_KEY, PROXY_PW, MASTER):
        assert secret not in run["out"] and secret not in run["again"]
    recaps = [line for line in run["again"].splitlines() if " ok=" in line and "unreachable=" in line]
    assert len(recaps) == 2 and all("changed=0 " in line for line in recaps), recaps
