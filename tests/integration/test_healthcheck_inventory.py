"""INI inventories through the real ``ansible-inventory`` (item 7): every value arrives as a string, and the
kit reads booleans as Ansible's ``| bool`` does. A CPU-only Ollama host (``inference_stack_gpu=false`` in a
``[group:vars]`` section) is healthy; a GPU host whose Ollama runs on the CPU is not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from healthchecks.endpoints.inventory import ansible_bool, from_inventory, read_inventory
from healthchecks.errors import ConfigError

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def _inventory(tmp_path: Path, port: int, gpu: str) -> Path:
    inv = tmp_path / "hosts.ini"
    inv.write_text(f"""[cpu_hosts]
lab-cpu ansible_host=127.0.0.1 inference_stack_ollama_port={port}

[cpu_hosts:vars]
inference_stack_engines=["ollama"]
inference_stack_gpu={gpu}
inference_stack_ollama_model=smollm2:135m

[gpu_hosts]
lab-gpu ansible_host=127.0.0.2 inference_stack_ollama_port=1

[gpu_hosts:vars]
inference_stack_engines=["ollama"]

[lab:children]
cpu_hosts
gpu_hosts
""")
    return inv


def test_ini_false_is_false(tmp_path: Path, ollama_double_cpu) -> None:
    port = int(ollama_double_cpu.url.rsplit(":", 1)[1])
    for text in ("false", "False", "no", "off", "0"):
        (ep,) = from_inventory(_inventory(tmp_path, port, text), group="cpu_hosts")
        assert ep.expect_gpu is False, text
        assert (ep.url, ep.model, ep.label) == (f"http://127.0.0.1:{port}", "smollm2:135m", "lab-cpu/ollama")
    r = subprocess.run([str(BIN / "healthcheck"), "--inventory", str(_inventory(tmp_path, port, "false")),
                        "--group", "cpu_hosts", "--json", "--no-diagnose"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    row = {c["name"]: c for c in json.loads(r.stdout)["endpoints"][0]["checks"]}["gpu_residency"]
    assert row["status"] == "pass" and "configured for a host without GPU" in row["reason"]
    gpu = subprocess.run([str(BIN / "healthcheck"), "--inventory", str(_inventory(tmp_path, port, "yes")),
                          "--host", "lab-cpu", "--json", "--no-diagnose"], capture_output=True, text=True, timeout=120)
    assert gpu.returncode == 1  # a GPU host whose Ollama runs on the CPU


def test_groups_from_the_inventory_itself(tmp_path: Path) -> None:
    """``--group`` selects by the inventory's groups, parents included (``ansible-inventory --list`` carries
    no ``group_names`` in hostvars, so a filter on that matched nothing)."""
    inv = _inventory(tmp_path, 11434, "false")
    assert [e.label for e in from_inventory(inv, group="cpu_hosts")] == ["lab-cpu/ollama"]
    assert [e.label for e in from_inventory(inv, group="lab")] == ["lab-cpu/ollama", "lab-gpu/ollama"]
    assert [e.label for e in from_inventory(inv, group="all")] == ["lab-cpu/ollama", "lab-gpu/ollama"]
    with pytest.raises(ConfigError, match=r"no hosts with engines in inventory .* group nope"):
        from_inventory(inv, group="nope")


def test_ini_boolean_that_is_not_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lab-cpu: inference_stack_gpu must be a boolean .* not 'sometimes'"):
        from_inventory(_inventory(tmp_path, 11434, "sometimes"))
    r = subprocess.run([str(BIN / "healthcheck"), "--inventory", str(_inventory(tmp_path, 11434, "sometimes"))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_read_inventory_is_what_ansible_sees(tmp_path: Path) -> None:
    """The one inventory reader (healthcheck, pyinfra, testinfra): group nesting, group_vars/ and host_vars/
    beside the inventory, INI values as text, and a host with no variables at all (``--list`` leaves it out of
    ``_meta.hostvars``) still a host."""
    inv = _inventory(tmp_path, 11434, "t")
    (tmp_path / "hosts.ini").write_text(inv.read_text() + "\n[bare]\nlab-bare\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "lab.yml").write_text("inference_stack_vllm_port: 8001\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "lab-gpu.yml").write_text("inference_stack_gpu: true\n")
    hosts = {h.name: h for h in read_inventory(inv)}
    assert sorted(hosts) == ["lab-bare", "lab-cpu", "lab-gpu"]
    cpu, gpu, bare = hosts["lab-cpu"], hosts["lab-gpu"], hosts["lab-bare"]
    assert {"cpu_hosts", "lab", "all"} <= cpu.groups and "gpu_hosts" not in cpu.groups
    # INI host lines are read as Python literals, [group:vars] sections as text
    assert cpu.vars["inference_stack_ollama_port"] == 11434 and cpu.vars["inference_stack_gpu"] == "t"
    assert ansible_bool(cpu.vars["inference_stack_gpu"], "inference_stack_gpu") is True  # convert_bool's "t"
    assert cpu.vars["inference_stack_vllm_port"] == 8001 and gpu.vars["inference_stack_gpu"] is True
    assert bare.vars == {} and bare.groups == {"bare", "all"}
    assert [h.name for h in read_inventory(inv, group="lab")] == ["lab-cpu", "lab-gpu"]
    assert [h.name for h in read_inventory(inv, group="lab", host="lab-gpu")] == ["lab-gpu"]
    assert read_inventory(inv, group="nope") == []
    with pytest.raises(ConfigError, match=r"inventory .*missing.ini does not exist"):
        read_inventory(tmp_path / "missing.ini")
