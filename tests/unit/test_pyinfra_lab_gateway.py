"""The pyinfra deployer's lab gateway (issue 21): a host of the inventory group gateway_hosts gets the gateway in front
of every host of gpu_hosts, its config.yaml the bytes roles/gateway renders in gateway_mode lab for the same
inventory (Ansible's side: the role's own validate.yml and template through ansible-playbook; pyinfra's side: the
same inventory read by pyinfra/inventory.py). One model name served by several hosts is several deployments of that
name; a host with its own gateway is reached through it; a loopback upstream address is refused naming
gateway_upstream_address; the gateway container's proxy settings list the upstream hosts in NO_PROXY."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_settings as gs  # noqa: E402

KEY = "sk-unitlab" + secrets.token_hex(8)
SALT = secrets.token_hex(32)  # the host's files_digest_salt (roles/inference_stack files_salt), as deploy.py reads it
VLLM_KEY = "sk-vllm" + secrets.token_hex(6)
PROXY = {"proxy_http": "http://proxy.lab.example:3128", "proxy_https": "http://proxy.lab.example:3128",
         "proxy_no_proxy": "localhost,127.0.0.1,mirror.lab.example"}
# gpu_hosts by name (pyinfra/inventory.py lists hosts by name; the inventory file lists them in INVENTORY_ORDER)
UPSTREAMS: dict[str, dict[str, Any]] = {
    # vLLM and llama.cpp serving one name, published on the lab network (group_vars: 0.0.0.0)
    "alpha": {"ansible_host": "10.1.0.11", "inference_stack_engines": ["vllm", "llamacpp"],
              "inference_stack_vllm_served_model_name": "smol", "inference_stack_llamacpp_model_alias": "smol",
              "inference_stack_llamacpp_port": 18080},
    # reached over an SSH tunnel by Ansible (loopback ansible_host): the gateway reaches it at its lab address
    "beta": {"ansible_host": "127.0.0.1", "ansible_port": 2222, "gateway_upstream_address": "10.1.0.12",
             "inference_stack_engines": ["llamacpp"], "inference_stack_llamacpp_model_alias": "smol"},
    # a host with its own gateway: reached through it (its Ollama stays on loopback)
    "delta": {"ansible_host": "10.1.0.14", "inference_stack_engines": ["ollama", "llamacpp"],
              "gateway_enabled": True, "gateway_port": 14000,
              "gateway_bind_address": "10.1.0.14"},  # the lab gateway reaches its gateway there (not loopback)
    # a host gateway with the lab's certificate: it serves TLS only, the lab gateway reaches it by https (the role's
    # gateway_lab_hosts 'tls': both files set; whether they load is that host's own check)
    "eps": {"ansible_host": "10.1.0.15", "inference_stack_engines": ["llamacpp"],
            "inference_stack_llamacpp_model_alias": "tiny", "gateway_enabled": True,
            "gateway_bind_address": "10.1.0.15", "gateway_tls_cert_src": "/lab/tls/eps.crt",
            "gateway_tls_key_src": "/lab/tls/eps.key"},
    # the lab gateway's own host, in both groups: its engines by compose service name (published on its lab
    # address: the other lab gateway, solo, reaches them there; on loopback only, solo's config is refused)
    "gw": {"ansible_host": "10.1.0.10", "inference_stack_engines": ["llamacpp"],
           "inference_stack_bind_address": "10.1.0.10"},
}
# the order the inventory file lists gpu_hosts in: not by name, so both deployers must sort (roles/gateway's
# gateway_lab_hosts walks the group sorted, as pyinfra/inventory.py lists hosts) to write the same routes
INVENTORY_ORDER = ["gw", "delta", "alpha", "eps", "beta"]
HF_TOKEN = "hf_unitlab" + secrets.token_hex(6)
GATEWAY_ONLY = {"solo": {"ansible_host": "10.1.0.20", "gateway_num_retries": 5,
                         "gateway_routing_strategy": "least-busy",
                         "gateway_hf_fallback_model": "HuggingFaceTB/SmolLM3-3B", "gateway_port": 4400,
                         "vault_hf_token": f" {HF_TOKEN}\n",  # the fallback's token (written trimmed)
                         "inference_stack_project_name": "gik-lab-gw"}}

# group_vars/gpu_hosts: settings a gateway_hosts-only host must not get (Ansible gives it no gpu_hosts layer): a
# gateway setting and a path setting (the secrets folder gateway.env names) that change what the role renders
GPU_HOSTS_LAYER = {"inference_stack_bind_address": "0.0.0.0", "inference_stack_gpu": False,
                   "gateway_cooldown_time": 45, "hf_secret_dir": "/srv/gik-gpu-secrets"}
GATEWAY_HOSTS_LAYER = {"gateway_allowed_fails": 3}


def _inventory(tmp: Path) -> Path:
    # (ansible-playbook -c local: pyinfra/inventory.py names a host with ansible_connection local @local)
    common = {"ansible_python_interpreter": sys.executable,
              "vault_gateway_master_key": KEY, "vault_vllm_api_key": VLLM_KEY, **PROXY}
    hosts = {name: {**values, "inference_stack_dir": str(tmp / name / "opt"), "gik_out": str(tmp / name)}
             for name, values in {**UPSTREAMS, **GATEWAY_ONLY}.items()}
    inv = tmp / "inventory" / "hosts.yml"
    (tmp / "inventory" / "group_vars" / "gpu_hosts").mkdir(parents=True)
    (tmp / "inventory" / "group_vars" / "gpu_hosts" / "main.yml").write_text(yaml.safe_dump(GPU_HOSTS_LAYER))
    # a host only in gateway_hosts gets this layer and not gpu_hosts' (a host in both gets both, gpu_hosts' above)
    (tmp / "inventory" / "group_vars" / "gateway_hosts.yml").write_text(yaml.safe_dump(GATEWAY_HOSTS_LAYER))
    inv.write_text(yaml.safe_dump({"all": {"vars": common, "children": {
        "gpu_hosts": {"hosts": {n: hosts[n] for n in INVENTORY_ORDER}},
        "gateway_hosts": {"hosts": {"gw": None, "solo": hosts["solo"]}}}}}, sort_keys=False))
    for name in hosts:
        (tmp / name).mkdir()
    return inv


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """roles/gateway in gateway_mode lab (its validate.yml, then gateway.env.j2) on each host of gateway_hosts."""
    tmp = tmp_path_factory.mktemp("labgw")
    inv = _inventory(tmp)
    play = [{"name": "render", "hosts": "gateway_hosts", "gather_facts": False, "tasks": [
        {"ansible.builtin.import_role": {"name": "gateway", "tasks_from": "validate"}, "vars": {"gateway_mode": "lab"}},
        {"ansible.builtin.copy": {"content": "{{ gateway_config }}", "dest": "{{ gik_out }}/config.yaml",
                                  "mode": "0644"}},
        {"ansible.builtin.template": {"src": str(gs.GATEWAY_ENV_TEMPLATE), "dest": "{{ gik_out }}/gateway.env",
                                      "mode": "0644"}, "vars": {"gateway_mode": "lab"}},
    ]}]
    (tmp / "render.yml").write_text(yaml.safe_dump(play))
    r = subprocess.run([str(BIN / "ansible-playbook"), "-c", "local", "-i", str(inv), str(tmp / "render.yml"), "-e",
                        json.dumps({"gateway_kit_root": str(ROOT), "inference_stack_files_salt": SALT})], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_FORCE_COLOR": "0"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    inventory = _pyinfra_inventory(inv)
    upstreams = {n: gs.load_host_data(d, files_salt=SALT) for n, d in inventory.gpu_hosts}  # each host's, once
    gateways = {}
    for name, data in inventory.gateway_hosts:
        settings = upstreams[name] if name in upstreams else gs.load_host_data(data, files_salt=SALT)
        gateways[name] = gs.lab_gateway(settings, gs.lab_hosts(inventory.gpu_hosts, name,
                                                               lambda n, _d: upstreams[n]))
    return {"tmp": tmp, "inventory": inv, "pyinfra": inventory, "gateways": gateways, "upstreams": upstreams}


def _pyinfra_inventory(inv: Path) -> ModuleType:
    """pyinfra/inventory.py as `pyinfra pyinfra/inventory.py ...` loads it, for ``inv``."""
    old = os.environ.get("GIK_INVENTORY")
    os.environ["GIK_INVENTORY"] = str(inv)
    try:
        spec = importlib.util.spec_from_file_location("gik_test_inventory", ROOT / "pyinfra" / "inventory.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        if old is None:
            os.environ.pop("GIK_INVENTORY", None)
        else:
            os.environ["GIK_INVENTORY"] = old


def test_inventory_groups(lab: dict[str, Any]) -> None:
    inv = lab["pyinfra"]
    assert sorted(INVENTORY_ORDER) == list(UPSTREAMS) != INVENTORY_ORDER  # the file lists them out of name order
    assert list(yaml.safe_load(lab["inventory"].read_text())["all"]["children"]["gpu_hosts"]["hosts"]) == \
        INVENTORY_ORDER
    assert [n for n, _ in inv.gpu_hosts] == list(UPSTREAMS)
    assert [n for n, _ in inv.gateway_hosts] == ["gw", "solo"]
    assert all(d["gik_inventory_name"] == n for n, d in inv.gpu_hosts + inv.gateway_hosts)


def test_a_gateway_only_host_gets_the_layers_ansible_gives_it(lab: dict[str, Any]) -> None:
    """solo (only in gateway_hosts): all, gateway_hosts and its own variables, never group_vars/gpu_hosts; gw (in
    both groups): gpu_hosts' layer too. Each setting resolves to the value ansible-inventory gives the host, or, where
    Ansible gives it none, the roles' default."""
    from healthchecks.endpoints.inventory import read_inventory

    data = dict(lab["pyinfra"].gateway_hosts)
    ansible = {h.name: h.vars for h in read_inventory(lab["inventory"])}
    defaults = gs.load(group_vars=lab["tmp"] / "no-such-folder")  # no inventory layer: the roles' defaults
    for name in ("gw", "solo"):
        settings = lab["upstreams"][name] if name == "gw" else gs.load_host_data(data[name])
        for key in [*GPU_HOSTS_LAYER, *GATEWAY_HOSTS_LAYER]:
            # (hf_secret_dir's default is under the host's own inference_stack_dir)
            default = f"{settings.stack_dir}/secrets" if key == "hf_secret_dir" else defaults.value(key)
            want = ansible[name].get(key, default)
            assert settings.value(key) == want, (name, key, settings.sources.get(key))
    solo = gs.load_host_data(data["solo"])
    assert "hf_secret_dir" not in ansible["solo"] and solo.secret_dir == f"{solo.stack_dir}/secrets"
    assert solo.value("gateway_cooldown_time") is None and "gateway_cooldown_time" not in solo.sources  # (no default)
    assert solo.value("gateway_allowed_fails") == 3 and solo.sources["gateway_allowed_fails"] == "group_vars"
    assert data["solo"]["gik_group_names"] == ["gateway_hosts"]
    assert data["gw"]["gik_group_names"] == ["gateway_hosts", "gpu_hosts"]


def test_an_inventory_without_a_group_vars_folder_gives_no_layer(tmp_path: Path) -> None:
    """No group_vars/gpu_hosts beside the lab's inventory: no lab layer (as Ansible), not the kit's own
    inventory/group_vars/gpu_hosts (which sets inference_stack_gpu: true and binds 0.0.0.0)."""
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {
        "gpu_hosts": {"hosts": {"one": {"ansible_host": "10.2.0.1"}}},
        "gateway_hosts": {"hosts": {"two": {"ansible_host": "10.2.0.2"}}}}}}))
    inventory = _pyinfra_inventory(inv)
    for name, data in inventory.gpu_hosts + inventory.gateway_hosts:
        settings = gs.load_host_data(data)
        assert settings.sources["inference_stack_gpu"].startswith("roles/"), (name, settings.sources)
        assert settings.value("inference_stack_bind_address") == "127.0.0.1", name


@pytest.mark.parametrize("name", ["gw", "solo"])
def test_lab_config_is_the_roles_bytes(lab: dict[str, Any], name: str) -> None:
    g = lab["gateways"][name]  # what pyinfra/deploy.py renders on the gateway_hosts host ``name``
    out = lab["tmp"] / name
    assert g.config == (out / "config.yaml").read_text()
    config = yaml.safe_load(g.config)
    ids = [m["model_info"]["id"] for m in config["model_list"] if not m["model_info"]["id"].endswith("#direct")
           and m["model_info"]["id"] != "hf"]
    # one name served by three engines on two hosts: three deployments of it, load-balanced by the router
    assert [m["litellm_params"]["api_base"] for m in config["model_list"] if m["model_name"] == "smol"] == [
        "http://10.1.0.11:8000/v1", "http://10.1.0.11:18080/v1", "http://10.1.0.12:8080/v1"]
    # delta through its own gateway (its Ollama too), beta at gateway_upstream_address, never its loopback
    assert "http://10.1.0.14:14000/v1" in g.config and "127.0.0.1" not in g.config
    # eps's gateway has the lab's certificate: reached by https
    assert "https://10.1.0.15:4000/v1" in g.config and "http://10.1.0.15:" not in g.config
    if name == "gw":  # its own engine by compose service name
        assert ids == ["alpha/vllm", "alpha/llamacpp", "beta/llamacpp", "delta/ollama", "delta/llamacpp",
                       "eps/llamacpp", "gw/llamacpp"]
        assert "http://llamacpp:8080/v1" in g.config
    else:  # gw's llama.cpp at gw's lab address, where it is published
        assert ids == ["alpha/vllm", "alpha/llamacpp", "beta/llamacpp", "delta/ollama", "delta/llamacpp",
                       "eps/llamacpp", "gw/llamacpp"]
        assert "http://10.1.0.10:8080/v1" in g.config and "http://llamacpp:8080/v1" not in g.config
        assert config["router_settings"]["routing_strategy"] == "least-busy" and "SmolLM3-3B@hf" in g.config
    assert KEY not in g.config + g.env and VLLM_KEY not in g.config + g.env


@pytest.mark.parametrize("name", ["gw", "solo"])
def test_lab_env_is_the_roles_and_lists_the_upstreams_in_no_proxy(lab: dict[str, Any], name: str) -> None:
    g = lab["gateways"][name]
    assert g.env == (lab["tmp"] / name / "gateway.env").read_text()
    # the gateway container's proxy settings: the lab's proxy (the Hugging Face fallback goes through it), every
    # upstream host reached directly (its own host's engines are compose services, compose's NO_PROXY lists them)
    env = dict(line.split("=", 1) for line in g.env.splitlines() if "=" in line and not line.startswith("#"))
    assert (env["HTTP_PROXY"], env["HTTPS_PROXY"]) == (PROXY["proxy_http"], PROXY["proxy_https"])
    upstreams = ["10.1.0.11", "10.1.0.12", "10.1.0.14", "10.1.0.15"] + (["10.1.0.10"] if name == "solo" else [])
    assert env["NO_PROXY"].split(",") == [*PROXY["proxy_no_proxy"].split(","), "::1", *upstreams]
    assert not g.env_secret
    # the master key and every keyed engine's key (the lab's), as the role writes them in lab mode
    # (the HF token only where gateway_hf_fallback_model is set, its own file; else empty, off the gateway host)
    assert g.secrets == {"gateway_master_key": KEY, "vllm_api_key": VLLM_KEY, "llamacpp_api_key": "",
                         "gateway_hf_token": HF_TOKEN if name == "solo" else ""}


def test_loopback_upstream_is_refused_naming_the_setting(lab: dict[str, Any]) -> None:
    inv = lab["pyinfra"]
    ups = [(n, {k: v for k, v in d.items() if k != "gateway_upstream_address"}) for n, d in inv.gpu_hosts]
    settings = lab["upstreams"]["gw"]
    with pytest.raises(gs.SettingsError) as e:
        gs.lab_gateway(settings, gs.lab_hosts(ups, "gw", lambda n, _d: lab["upstreams"][n]))
    assert "beta" in str(e.value) and "gateway_upstream_address" in str(e.value) and KEY not in str(e.value)


def test_no_upstream_host_is_refused() -> None:
    settings = gs.load({"vault_gateway_master_key": KEY})
    with pytest.raises(gs.SettingsError, match="upstream group has no host"):
        gs.lab_gateway(settings, {})


def test_proxy_credentials_make_gateway_env_a_secret(lab: dict[str, Any]) -> None:
    settings = gs.load({"vault_gateway_master_key": KEY, "proxy_http": "http://u:pw@proxy.lab.example:3128"})
    g = gs.lab_gateway(settings, gs.lab_hosts(lab["pyinfra"].gpu_hosts, "solo", lambda n, _d: lab["upstreams"][n]))
    assert g.env_secret and "NO_PROXY=" in g.env  # deploy.py writes it root-only (0600), never diffed
