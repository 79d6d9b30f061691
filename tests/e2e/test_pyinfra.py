"""pyinfra: `pyinfra @local pyinfra/deploy.py` on this machine (no GPU: CPU images, vLLM + llama.cpp, the llama.cpp
image shipped as a tarball), from the same settings files as Ansible plus a settings file. Bad settings stop before
any change; `--dry` on a fresh state changes nothing; the first run deploys and verifies; a second run changes
nothing; the testinfra suite passes against the deployment. One deployment for the module, torn down at the end."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_settings as gs  # noqa: E402


def pyinfra(settings: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    """The user-facing form: pyinfra @local pyinfra/deploy.py --data gik_settings=FILE [...]."""
    return subprocess.run([str(BIN / "pyinfra"), "@local", "pyinfra/deploy.py", "--data", f"gik_settings={settings}",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "GIK_BIN": str(BIN)})


def summary(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """pyinfra --json: the plan (operations with a change detected) and, after a run, the totals."""
    try:
        doc = json.loads(r.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyinfra printed no JSON (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}",
                    pytrace=False)
    planned = [op["name"] for op in doc["plan"] if op["hosts_with_change"]]
    return {"planned": planned, "totals": (doc.get("results") or {}).get("totals")}


def host_salt(opt: Path) -> str:
    """The host's salt of the secret files' digests (files_digest_salt, root-only 0400), which the deploy wrote once
    and renders .env's and gateway.env's <SERVICE>_FILES_DIGEST with."""
    salt = opt / "secrets" / "files_digest_salt"
    st = salt.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o400)
    return salt.read_text()


def project_containers(project: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, check=True).stdout.split()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("pyinfra")
    token = "hf_pyinfra" + secrets.token_hex(10)
    token_file = tmp / "hf_token.txt"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    api_key = "sk-pyinfra" + secrets.token_hex(10)  # vLLM then requires it; verify reads the same file
    key_file = tmp / "vllm_api_key.txt"
    key_file.write_text(api_key + "\n")
    key_file.chmod(0o600)
    # air-gapped: the llama.cpp image reaches the host only as a `docker save` tarball, under a tag of its own
    project = "gik-pyinfra-" + secrets.token_hex(3)
    image = f"local/llama.cpp:{project}"
    tarball = tmp / "llama.cpp-server.tar"
    subprocess.run(["docker", "tag", "local/llama.cpp:server", image], check=True)
    subprocess.run(["docker", "save", "-o", str(tarball), image], check=True, timeout=300)
    subprocess.run(["docker", "rmi", image], check=True, capture_output=True)  # untag: the layers stay
    settings = {
        "inference_stack_gpu": False,
        "inference_stack_engines": ["vllm", "llamacpp"],
        "inference_stack_bind_address": "127.0.0.1",
        "inference_stack_vllm_port": free_port(),
        "inference_stack_llamacpp_port": free_port(),
        "inference_stack_dir": str(tmp / "opt"),
        "inference_stack_project_name": project,
        "inference_stack_models_dir": str(CACHE / "models"),
        "inference_stack_wait_timeout": 900,
        "inference_stack_image_tarballs": [str(tarball)],
        "inference_stack_llamacpp_image": image,
        "hf_secret_token_file": str(token_file),
        "hf_secret_vllm_api_key_file": str(key_file),
        "docker_install_from": "distro",
        "docker_manage_service": False,  # dockerd runs without an init system here
        "verify_num_prompts": 4,
        "verify_output_len": 16,
        "verify_reports_dir": str(tmp / "reports"),
        # the kit's inventory/group_vars/gpu_hosts (the lab example, 3223e8d) runs a gateway on 0.0.0.0 on every
        # engine host: this host runs its engines alone (test_gateway_... turns it on), its gateway on loopback
        "gateway_enabled": False,
        "gateway_bind_address": "127.0.0.1",
    }
    settings_file = tmp / "settings.yml"
    settings_file.write_text(yaml.safe_dump(settings))
    yield {"settings": settings_file, "values": settings, "token": token, "project": project, "tmp": tmp,
           "opt": tmp / "opt", "image": image, "api_key": api_key}
    if (tmp / "opt" / "compose").is_dir():
        subprocess.run(["docker", "compose", "-p", project, "down", "-v", "--remove-orphans"],
                       cwd=tmp / "opt" / "compose", capture_output=True, timeout=300)
    subprocess.run(["docker", "rmi", image], capture_output=True)


@pytest.mark.parametrize(("data", "needle"), [
    ("inference_stack_engines=[\"vllm\",\"tgi\"]", "inference_stack_engines"),
    ("inference_stack_vllm_port=eighty", "inference_stack_vllm_port"),
    ("inference_stack_llamacpp_port=SAME", "port clash"),
    ("docker_install_from=snap", "docker_install_from"),
    ("inference_stack_gpu=maybe", "inference_stack_gpu"),
    ("inference_stack_gpu=true", "nvidia_driver"),  # a GPU host without the driver: Ansible's roles install it
    # typed settings given as --data text: converted by the stack catalogue's type and range, or named
    ("inference_stack_vllm_gpu_memory_utilization=1.5",
     "inference_stack_vllm_gpu_memory_utilization='1.5' must be a fraction in (0, 1]"),
    ("verify_num_prompts=0", "verify_num_prompts='0' must be a positive integer"),
    ("inference_stack_vllm_max_model_len=lots", "inference_stack_vllm_max_model_len"),
    # published beyond loopback without a key (healthchecks/exposure): vLLM has one here, llama.cpp none, and the
    # refusal names the settings that give it one (hf_secret writes llamacpp_api_key, as for vLLM)
    ("inference_stack_bind_address=0.0.0.0", "llamacpp would be published on 0.0.0.0 (inference_stack_bind_address) "
                                             "without an API key: give it one (hf_secret_llamacpp_api_key_file or "
                                             "vault_llamacpp_api_key)"),
    # the gateway (roles/gateway's checks): no master key in the vault nor gateway_master_key_src
    ("gateway_enabled=true", "gateway_master_key (vault_gateway_master_key, or gateway_master_key_src) must be set"),
])
def test_bad_settings_stop_before_any_change(lab: dict[str, Any], data: str, needle: str) -> None:
    data = data.replace("SAME", str(lab["values"]["inference_stack_vllm_port"]))
    r = pyinfra(lab["settings"], "-y", "--data", data, timeout=300)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("pyinfra/deploy.py: @local:")]
    assert len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr
    assert lab["token"] not in r.stdout + r.stderr
    assert not lab["opt"].exists(), "a change was made before the bad value was caught"


def test_typed_settings_given_as_data_text_work(lab: dict[str, Any]) -> None:
    """`--data name=value` is text: every typed stack setting given so is converted by the catalogue's type (the
    dry run plans the deploy; no change)."""
    from healthchecks import stack

    data = []
    for st in stack.load().settings.values():
        if st.ansible and st.type in ("int", "float", "bool"):
            value = lab["values"].get(st.ansible, st.default)
            data += ["--data", f"{st.ansible}={str(value).lower() if isinstance(value, bool) else value}"]
    r = pyinfra(lab["settings"], "--dry", "--json", *data, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Render .env" in summary(r)["planned"] and not lab["opt"].exists()


def test_dry_run_on_a_fresh_host_changes_nothing(lab: dict[str, Any]) -> None:
    r = pyinfra(lab["settings"], "--dry", "--diff", "--json", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    planned = summary(r)["planned"]
    assert "Render .env" in planned and "Bring the engines up and wait until healthy" in planned, planned
    assert any(name.startswith("Load llama.cpp-server.tar") for name in planned), planned
    assert not lab["opt"].exists() and not project_containers(lab["project"])
    assert subprocess.run(["docker", "image", "inspect", lab["image"]], capture_output=True).returncode != 0
    assert lab["token"] not in r.stdout + r.stderr


def test_deploys_verifies_and_second_run_changes_nothing(lab: dict[str, Any]) -> None:
    t0 = time.monotonic()
    first = pyinfra(lab["settings"], "-y", "--json")
    t_first = time.monotonic() - t0
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    totals = summary(first)["totals"]
    assert totals["error"] == 0 and totals["success"] > 0, totals
    assert lab["token"] not in first.stdout + first.stderr and lab["api_key"] not in first.stdout + first.stderr
    port = lab["values"]["inference_stack_vllm_port"]
    assert subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/v1/models"],
                          capture_output=True, text=True).stdout == "401"  # the key is in force

    reports = lab["tmp"] / "reports" / "local"
    hc = json.loads((reports / "healthcheck.json").read_text())
    assert hc["healthy"] and sorted(e["engine"] for e in hc["endpoints"]) == ["llamacpp", "vllm"]
    assert (reports / "bench.png").stat().st_size > 10_000 and json.loads((reports / "bench.json").read_text())
    assert (reports / "bench.html").stat().st_size > 0  # the verify role's reports, from the same command line

    # what was written is what the roles render (the unit test holds those to Ansible's bytes)
    s = gs.load(settings_file=lab["settings"], files_salt=host_salt(lab["opt"]))
    assert (lab["opt"] / "compose" / ".env").read_text() == gs.render_env(s)
    secret_dir = lab["opt"] / "secrets"
    assert stat.S_IMODE(secret_dir.stat().st_mode) == 0o700
    for name, content in (("hf_token", lab["token"]), ("vllm_api_key", lab["api_key"])):
        st = (secret_dir / name).stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o400), name
        assert (secret_dir / name).read_text() == content, name
    containers = sorted(project_containers(lab["project"]))
    # the two engines chosen (compose adds the services they depend on, e.g. vLLM's model check), no other engine
    engines = subprocess.run(["docker", "inspect", "-f", '{{index .Config.Labels "io.gpu-inference-kit.engine"}}',
                              *containers], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(engines) == ["llamacpp", "vllm"], engines
    llamacpp_image = subprocess.run(["docker", "inspect", "-f", "{{.Config.Image}}", *containers], capture_output=True,
                                    text=True, check=True).stdout.split()
    assert lab["image"] in llamacpp_image, "llama.cpp does not run the image loaded from the tarball"

    t0 = time.monotonic()
    second = pyinfra(lab["settings"], "-y", "--json")
    t_second = time.monotonic() - t0
    assert second.returncode == 0, second.stderr[-5000:]
    assert summary(second)["totals"]["success"] == 0, second.stderr[-5000:]  # pyinfra's "changed" column
    assert sorted(project_containers(lab["project"])) == containers
    print(f"\npyinfra deploy.py first run {t_first:.0f}s, second run {t_second:.0f}s (no change)")

    dry = pyinfra(lab["settings"], "--dry", "--json", timeout=300)
    assert dry.returncode == 0 and summary(dry)["planned"] == [], dry.stdout[-3000:]

    # --dry --diff with a changed setting: shows the .env diff, changes nothing
    env_before = (lab["opt"] / "compose" / ".env").read_bytes()
    diff = pyinfra(lab["settings"], "--dry", "--diff", "--data", "inference_stack_llamacpp_model_alias=other",
                   timeout=300)
    assert diff.returncode == 0, diff.stderr[-3000:]
    assert "LLAMACPP_MODEL_ALIAS=other" in diff.stdout + diff.stderr
    assert (lab["opt"] / "compose" / ".env").read_bytes() == env_before
    assert sorted(project_containers(lab["project"])) == containers


def test_infra_suite_passes_against_the_pyinfra_deployment(lab: dict[str, Any]) -> None:
    if not (lab["opt"] / "compose" / ".env").exists():
        pytest.skip("the deployment test did not deploy")
    r = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "infra"), "-q", "-p", "no:cacheprovider",
                        "--hosts=local://", f"--compose-dir={lab['opt'] / 'compose'}", "-o", "addopts="],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "error" not in r.stdout.splitlines()[-1]
    assert lab["token"] not in r.stdout + r.stderr

    # the Ansible form against the same host: the same settings as an inventory's group_vars
    inv = lab["tmp"] / "inventory"
    (inv / "group_vars" / "gpu_hosts").mkdir(parents=True, exist_ok=True)
    (inv / "group_vars" / "gpu_hosts" / "main.yml").write_text(lab["settings"].read_text())
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    r = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "infra"), "-q", "-p", "no:cacheprovider",
                        "--hosts=ansible://gpu_hosts", f"--ansible-inventory={inv / 'hosts.yml'}", "-o", "addopts="],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "8 passed" in r.stdout, r.stdout[-2000:]


def test_gateway_on_a_llamacpp_host_and_the_lab_report(lab: dict[str, Any]) -> None:
    """gateway_enabled on a llama.cpp-only host (its own project beside the module's): the gateway comes up as
    roles/gateway brings it up, one URL and key answer a completion, no key is refused, the secrets are root-only
    files that no output shows, a second run changes nothing, and the deploy ends with the lab report."""
    import httpx

    from healthchecks import gateway

    tmp = lab["tmp"] / "gateway"
    tmp.mkdir()
    master = "sk-pyinfragw" + secrets.token_hex(10)
    master_file = tmp / "master_key.txt"
    master_file.write_text(master + "\n")
    master_file.chmod(0o600)
    project = lab["project"] + "-gw"
    gateway_port = free_port()
    values = {k: v for k, v in lab["values"].items() if k not in (
        "inference_stack_image_tarballs", "inference_stack_llamacpp_image", "hf_secret_vllm_api_key_file",
        "inference_stack_vllm_port")}
    values.update(inference_stack_engines=["llamacpp"], inference_stack_dir=str(tmp / "opt"),
                  inference_stack_project_name=project, inference_stack_llamacpp_port=free_port(),
                  gateway_enabled=True, gateway_image=gateway.OFFLINE_IMAGE, gateway_port=gateway_port,
                  gateway_master_key_src=str(master_file), verify_reports_dir=str(tmp / "reports"))
    settings_file = tmp / "settings.yml"
    settings_file.write_text(yaml.safe_dump(values))
    compose_dir = tmp / "opt" / "compose"
    try:
        t0 = time.monotonic()
        first = pyinfra(settings_file, "-y", "--json")
        t_first = time.monotonic() - t0
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
        out = first.stdout + first.stderr
        assert summary(first)["totals"]["error"] == 0
        assert master not in out and lab["token"] not in out
        assert "lab report: " in first.stderr and "lab.html" in first.stderr, first.stderr[-2000:]

        # the files roles/gateway writes, as its filters and template render them; the secrets root-only
        s = gs.load(settings_file=settings_file, files_salt=host_salt(tmp / "opt"))
        g = gs.gateway(s)
        assert (compose_dir / "gateway" / "config.yaml").read_text() == g.config
        assert (compose_dir / "gateway.env").read_text() == g.env
        for name, content in (("gateway_master_key", master), ("llamacpp_api_key", "")):
            st = (tmp / "opt" / "secrets" / name).stat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o400), name
            assert (tmp / "opt" / "secrets" / name).read_text() == content, name

        # one URL and key in front of the host's engines: a real completion through it; no key, no answer
        url = f"http://127.0.0.1:{gateway_port}/v1"
        model = s.model("llamacpp")
        body = {"model": model, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
        r = httpx.post(f"{url}/chat/completions", json=body, headers={"Authorization": f"Bearer {master}"},
                       timeout=120)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"], r.text[:500]
        for headers in ({}, {"Authorization": "Bearer not-the-key"}):
            refused = httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=60)
            assert refused.status_code in (400, 401) and "choices" not in refused.text, refused.text[:300]
        gateway_ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                                      "--filter", "label=com.docker.compose.service=gateway"],
                                     capture_output=True, text=True, check=True).stdout.split()
        assert len(gateway_ids) == 1
        inspected = subprocess.run(["docker", "inspect", *gateway_ids], capture_output=True, text=True, check=True)
        logs = subprocess.run(["docker", "logs", *gateway_ids], capture_output=True, text=True)
        assert master not in inspected.stdout + logs.stdout + logs.stderr

        # host.json beside the host's results, and one page and one JSON for the whole run
        reports = tmp / "reports"
        host_json = json.loads((reports / "local" / "host.json").read_text())
        assert host_json["verified"] and host_json["engines"] == ["llamacpp"] and host_json["healthcheck_rc"] == 0
        lab_json = json.loads((reports / "lab.json").read_text())
        assert [h["name"] for h in lab_json["hosts"]] == ["local"] and lab_json["healthy"], lab_json
        # the host's own gateway is verified beside its engine (its routes, 401 without the key, upstream states)
        assert [e["engine"] for e in lab_json["hosts"][0]["engines"]] == ["llamacpp", "gateway"]
        hc = json.loads((reports / "local" / "healthcheck.json").read_text())
        assert hc["healthy"] and [e["engine"] for e in hc["endpoints"]] == ["llamacpp", "gateway"], hc
        assert lab_json["gateway"] is not None, lab_json
        page = (reports / "lab.html").read_text()
        assert "llamacpp" in page and "<script" not in page and (reports / "lab-junit.xml").stat().st_size > 0
        containers = sorted(project_containers(project))

        t0 = time.monotonic()
        second = pyinfra(settings_file, "-y", "--json")
        t_second = time.monotonic() - t0
        assert second.returncode == 0, second.stderr[-5000:]
        again = summary(second)
        assert again["totals"]["success"] == 0, (again["planned"], second.stderr[-3000:])  # nothing changed
        assert sorted(project_containers(project)) == containers and master not in second.stdout + second.stderr
        print(f"\npyinfra gateway deploy first run {t_first:.0f}s, second run {t_second:.0f}s (no change)")

        # the same host in the inventory's gpu_hosts and gateway_hosts (pyinfra/inventory.py): the lab gateway
        # (roles/gateway, gateway_mode lab) replaces the host gateway, its config the role's for that inventory, its
        # own engine reached by compose service name, its proxy settings from the gateway's (a dead proxy: the
        # engine traffic never goes through it)
        inventory = tmp / "inventory" / "hosts.yml"
        inventory.parent.mkdir()
        inventory.write_text(yaml.safe_dump({"all": {"children": {
            "gpu_hosts": {"hosts": {"gikgw": {"ansible_connection": "local"}}},
            "gateway_hosts": {"hosts": {"gikgw": None}}}}}))
        lab_settings = tmp / "settings-lab.yml"
        lab_settings.write_text(yaml.safe_dump({**values, "gateway_http_proxy": "http://127.0.0.1:9",
                                                "gateway_no_proxy": "mirror.lab.example",
                                                "verify_smoke_bench": False}))  # measured above: CI time
        t0 = time.monotonic()
        third = subprocess.run([str(BIN / "pyinfra"), "pyinfra/inventory.py", "pyinfra/deploy.py", "--data",
                                f"gik_settings={lab_settings}", "-y", "--json"], cwd=ROOT, capture_output=True,
                               text=True, timeout=900,
                               env={**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "GIK_BIN": str(BIN),
                                    "GIK_INVENTORY": str(inventory)})
        t_lab = time.monotonic() - t0
        assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-5000:]
        assert summary(third)["totals"]["error"] == 0 and master not in third.stdout + third.stderr
        s_lab = gs.load(settings_file=lab_settings, files_salt=host_salt(tmp / "opt"))
        g_lab = gs.lab_gateway(s_lab, {"gikgw": gs.lab_host("gikgw", s_lab, local=True)})
        assert (compose_dir / "gateway" / "config.yaml").read_text() == g_lab.config
        assert (compose_dir / "gateway.env").read_text() == g_lab.env
        st = (tmp / "opt" / "secrets" / "vllm_api_key").stat()  # a lab gateway sends every keyed engine's key
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o400)
        headers = {"Authorization": f"Bearer {master}"}
        for route in (model, f"{model}@gikgw/llamacpp"):  # the model group, and the lab route naming host/engine
            r = httpx.post(f"{url}/chat/completions", json={**body, "model": route}, headers=headers, timeout=120)
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"], (route, r.text[:500])
        refused = httpx.post(f"{url}/chat/completions", json=body, timeout=60)
        assert refused.status_code in (400, 401) and "choices" not in refused.text, refused.text[:300]
        gateway_ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                                      "--filter", "label=com.docker.compose.service=gateway"],
                                     capture_output=True, text=True, check=True).stdout.split()
        env = json.loads(subprocess.run(["docker", "inspect", *gateway_ids], capture_output=True, text=True,
                                        check=True).stdout)[0]["Config"]["Env"]
        assert "HTTP_PROXY=http://127.0.0.1:9" in env, env
        assert any(e.startswith("NO_PROXY=") and "mirror.lab.example" in e for e in env), env
        print(f"pyinfra lab gateway (inventory, gpu_hosts + gateway_hosts) run {t_lab:.0f}s")
    finally:
        if compose_dir.is_dir():
            subprocess.run(["docker", "compose", "--env-file", ".env", "--env-file", "gateway.env", "--profile",
                            "gateway", "-p", project, "down", "-v", "--remove-orphans"],
                           cwd=compose_dir, capture_output=True, timeout=300)


# -- the container lab (tests/lab): a Debian host over SSH as a non-root sudoer, Docker from the lab's mirror -------
@pytest.fixture(scope="module")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from lab.connected import Registry
    from lab.lab import Lab

    tmp = tmp_path_factory.mktemp("pyinfra-lab")
    project = "gik-pyinfra-lab-" + secrets.token_hex(3)
    image = f"local/llama.cpp:{project}"
    tarball = tmp / "llama.cpp-server.tar"
    subprocess.run(["docker", "tag", "local/llama.cpp:server", image], check=True)
    subprocess.run(["docker", "save", "-o", str(tarball), image], check=True, timeout=300)
    subprocess.run(["docker", "rmi", image], check=True, capture_output=True)
    token = "hf_pyinfralab" + secrets.token_hex(10)
    token_file = tmp / "hf_token.txt"
    token_file.write_text(token)
    t0 = time.monotonic()
    # lab1: a bare host; lab2: the distribution's docker.io without compose, and a user without sudo (issue 19)
    env = Lab.start(tmp, 2, [CACHE / "models", tarball], variants=[None, "dockerio"])
    print(f"\ncontainer lab up in {time.monotonic() - t0:.1f}s")
    h = env.hosts[0]
    group_vars = {
        "inference_stack_gpu": False, "inference_stack_engines": ["llamacpp"],
        "inference_stack_bind_address": "127.0.0.1",
        "docker_install_from": "docker", "docker_repo_base": f"{env.mirror_url}/docker", "docker_manage_service": False,
        "inference_stack_models_dir": str(CACHE / "models"), "inference_stack_image_tarballs": [str(tarball)],
        "inference_stack_llamacpp_image": image, "inference_stack_wait_timeout": 600,
        "hf_secret_token_file": str(token_file), "verify_num_prompts": 4, "verify_output_len": 16,
        "verify_reports_dir": str(tmp / "reports"),
    }
    host_vars = {h.name: {"inference_stack_dir": str(h.root / "opt"), "inference_stack_project_name": project,
                          "inference_stack_llamacpp_port": free_port()}}
    inventory = env.inventory(group_vars, host_vars, hosts_only=[h.name])

    # lab2, a connected lab's host: llama.cpp pulled from a private registry with a login, the secrets (token, vLLM
    # key, registry password) in the README's encrypted vault.yml, read with a vault password file
    h2 = env.hosts[1]
    h2.exec("cp /home/lab/.ssh/authorized_keys /home/nosudo/.ssh/ && chown nosudo /home/nosudo/.ssh/authorized_keys")
    password = "reg-" + secrets.token_hex(8)
    registry = Registry.start(tmp, auth=("lab", password))
    project2 = project + "-b"
    pulled = registry.push("local/llama.cpp:server", f"gik/llama.cpp:{project2}")
    vault = {"vault_hf_token": "hf_pyinfravault" + secrets.token_hex(10), "vault_vllm_api_key": "",
             "vault_registry_password": password}
    group_vars2 = {k: v for k, v in group_vars.items()
                   if k not in ("inference_stack_image_tarballs", "inference_stack_llamacpp_image",
                                "hf_secret_token_file")}
    group_vars2.update(inference_stack_llamacpp_image=pulled, docker_registry_logins=[
        {"registry": registry.host, "username": "lab", "password": "{{ vault_registry_password }}"}])
    inventory2 = env.inventory(group_vars2, {h2.name: {"inference_stack_dir": str(h2.root / "opt"),
                                                       "inference_stack_project_name": project2,
                                                       "inference_stack_llamacpp_port": free_port()}},
                               hosts_only=[h2.name], name="inventory-dockerio")
    vault_file = inventory2.parent / "group_vars" / "gpu_hosts" / "vault.yml"
    vault_file.write_text(yaml.safe_dump(vault))
    vault_pw = tmp / "vault-pass"
    vault_pw.write_text(secrets.token_hex(12) + "\n")
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(vault_pw), str(vault_file)],
                   check=True, capture_output=True)
    try:
        yield {"lab": env, "host": h, "inventory": inventory, "token": token, "project": project, "tmp": tmp,
               "host2": h2, "inventory2": inventory2, "vault": vault, "vault_pw": vault_pw, "project2": project2,
               "pulled": pulled, "registry": registry}
    finally:
        for p in (project, project2):
            subprocess.run(["docker", "compose", "-p", p, "down", "-v", "--remove-orphans"], capture_output=True,
                           timeout=300)
        env.stop()
        registry.stop()
        subprocess.run(["docker", "rmi", image, pulled], capture_output=True)


def lab_pyinfra(inventory: Path, *args: str, vault_pw: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The lab form: the Ansible inventory's hosts through pyinfra/inventory.py (``vault_pw``: Ansible's
    ANSIBLE_VAULT_PASSWORD_FILE, as a lab admin sets it for ansible-playbook)."""
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
    if vault_pw:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(vault_pw)
    return subprocess.run([str(BIN / "pyinfra"), "pyinfra/inventory.py", "pyinfra/deploy.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=1500,
                          env={**env, "GIK_INVENTORY": str(inventory), "GIK_BIN": str(BIN),
                               "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})


def one_line(r: subprocess.CompletedProcess[str], host: str) -> str:
    """The one line a stop prints (exit 2), no traceback."""
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    lines = [line for line in out.splitlines() if f"pyinfra/deploy.py: {host}:" in line
             or line.startswith("pyinfra/inventory.py:")]
    assert len(lines) == 1, out[-3000:]
    assert "Traceback" not in out
    return lines[0]


def test_lab_host_over_ssh_with_sudo(ssh_lab: dict[str, Any]) -> None:
    h = ssh_lab["host"]
    assert h.exec("command -v docker", check=False).returncode != 0  # a bare host: pyinfra installs Docker

    dry = lab_pyinfra(ssh_lab["inventory"], "--dry", "--json")
    assert dry.returncode == 0, dry.stderr[-4000:]
    assert "Install Docker and compose (docker)" in summary(dry)["planned"]
    assert h.exec("command -v docker", check=False).returncode != 0 and not (h.root / "opt").exists()

    t0 = time.monotonic()
    first = lab_pyinfra(ssh_lab["inventory"], "-y", "--json")
    t_first = time.monotonic() - t0
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    assert summary(first)["totals"]["error"] == 0
    assert ssh_lab["token"] not in first.stdout + first.stderr
    # Docker's documented deb822 source, as the docker role writes it (no one-line docker.list)
    sources = h.exec("cat /etc/apt/sources.list.d/docker.sources").stdout
    assert sources.startswith("Types: deb\nURIs: ") and "Signed-By: /etc/apt/keyrings/docker.asc" in sources
    assert h.exec("test -e /etc/apt/sources.list.d/docker.list", check=False).returncode != 0
    assert h.exec(f"sudo stat -c '%U %a' {h.root}/opt/secrets/hf_token").stdout.split() == ["root", "400"]
    hc = json.loads((ssh_lab["tmp"] / "reports" / h.name / "healthcheck.json").read_text())
    assert hc["healthy"] and [e["engine"] for e in hc["endpoints"]] == ["llamacpp"]

    t0 = time.monotonic()
    second = lab_pyinfra(ssh_lab["inventory"], "-y", "--json")
    t_second = time.monotonic() - t0
    assert second.returncode == 0 and summary(second)["totals"]["success"] == 0, second.stderr[-6000:]
    print(f"\npyinfra over SSH (container lab, Docker from the mirror): first run {t_first:.0f}s, "
          f"second run {t_second:.0f}s (no change)")

    # testinfra as a lab admin runs it without Ansible: SSH as the non-root user, root checks through sudo, the
    # settings from the deployed project's .env. The port check looks inside the host's network namespace and the
    # lab's engines publish on this machine's (sibling containers through the Docker socket): deselected.
    ssh_config = ssh_lab["tmp"] / "ssh_config"  # (testinfra 10 does not pass --ssh-extra-args on)
    ssh_config.write_text("Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    r = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "infra"), "-q", "-p", "no:cacheprovider",
                        f"--hosts=ssh://lab@127.0.0.1:{h.ssh_port}", f"--ssh-identity-file={ssh_lab['lab'].key}",
                        f"--ssh-config={ssh_config}", "--sudo",
                        f"--compose-dir={h.root / 'opt' / 'compose'}", "-k", "not ports_listen", "-o", "addopts="],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert ssh_lab["token"] not in r.stdout + r.stderr


def _inventory_copy(ssh_lab: dict[str, Any], name: str, host_vars: dict[str, Any]) -> Path:
    """lab2's inventory with more host variables, beside the original (same group_vars)."""
    inv = ssh_lab["inventory2"]
    doc = yaml.safe_load(inv.read_text())
    doc["all"]["children"]["gpu_hosts"]["hosts"][ssh_lab["host2"].name].update(host_vars)
    out = inv.parent / name
    out.write_text(yaml.safe_dump(doc))
    return out


def _dpkg_installed(h: Any, package: str) -> bool:
    return h.exec(f"dpkg-query -W -f '${{Status}}' {package} 2>/dev/null", check=False).stdout == \
        "install ok installed"


def test_lab_user_without_sudo_stops_before_any_change(ssh_lab: dict[str, Any]) -> None:
    """Issue 19 item 6: a deploy as a user who may not sudo (or told not to) ends in one line, nothing changed."""
    h2 = ssh_lab["host2"]
    for host_vars, needle in (({"ansible_user": "nosudo"}, "user nosudo cannot sudo without a password"),
                              ({"ansible_user": "nosudo", "ansible_become": False},
                               "runs as nosudo, not root, without sudo")):
        inv = _inventory_copy(ssh_lab, "hosts-nosudo.yml", host_vars)
        line = one_line(lab_pyinfra(inv, "-y", vault_pw=ssh_lab["vault_pw"]), h2.name)
        assert needle in line and "nothing was changed" in line, line
    assert not (h2.root / "opt").exists() and _dpkg_installed(h2, "docker.io")


def test_lab_distribution_docker_and_vault_connected_deploy(ssh_lab: dict[str, Any]) -> None:
    """Issue 19 item 6 and the connected lab with pyinfra, on a host with Debian's docker.io and no compose:
    Docker's packages replace it whole (never the compose plugin alone beside a removed engine), or one line when
    the lab forbids removing them; the README's encrypted vault.yml is read with the vault password file (or one
    line names the missing password); llama.cpp is pulled from a private registry after `docker login
    --password-stdin`; a second run changes nothing; a run with no secret at all never empties the host's token."""
    h2, inv, pw, vault = ssh_lab["host2"], ssh_lab["inventory2"], ssh_lab["vault_pw"], ssh_lab["vault"]
    secrets_out = (vault["vault_hf_token"], vault["vault_registry_password"])
    assert _dpkg_installed(h2, "docker.io") and _dpkg_installed(h2, "containerd")
    assert h2.exec("docker compose version", check=False).returncode != 0

    line = one_line(lab_pyinfra(inv, "-y", "--data", "docker_remove_conflicting=false", vault_pw=pw), h2.name)
    assert "docker_remove_conflicting is false" in line and "docker_install_from: distro" in line, line
    line = one_line(lab_pyinfra(inv, "-y"), h2.name)  # the vault without its password
    assert "no vault password" in line and "ANSIBLE_VAULT_PASSWORD_FILE" in line, line
    dry = lab_pyinfra(inv, "--dry", "--json", vault_pw=pw)
    assert dry.returncode == 0, dry.stderr[-4000:]
    planned = summary(dry)["planned"]
    for op in ("Remove packages that conflict with Docker's", "Install Docker and compose (docker)",
               f"Log in to {ssh_lab['registry'].host}"):
        assert op in planned, planned
    assert _dpkg_installed(h2, "docker.io") and not (h2.root / "opt").exists()

    t0 = time.monotonic()
    first = lab_pyinfra(inv, "-y", "--json", vault_pw=pw)
    t_first = time.monotonic() - t0
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-6000:]
    assert summary(first)["totals"]["error"] == 0
    assert not any(x in first.stdout + first.stderr for x in secrets_out)
    assert not _dpkg_installed(h2, "docker.io") and not _dpkg_installed(h2, "containerd")
    for package in ("docker-ce", "docker-ce-cli", "containerd.io", "docker-compose-plugin"):
        assert _dpkg_installed(h2, package), package
    assert h2.exec("docker compose version", check=False).returncode == 0
    assert h2.exec("stat -c '%U %a' /etc/apt/sources.list.d/docker.sources").stdout.split() == ["root", "644"]
    token_file = f"{h2.root}/opt/secrets/hf_token"
    assert h2.exec(f"stat -c '%U %a' {token_file}").stdout.split() == ["root", "400"]
    assert h2.exec(f"cat {token_file}").stdout == vault["vault_hf_token"]  # from the vault
    assert h2.exec("stat -c '%a' /root/.docker/config.json").stdout.strip() == "600"
    assert ssh_lab["registry"].host in h2.exec("cat /root/.docker/config.json").stdout
    assert h2.exec("ls -A /root/.docker").stdout.split() == ["config.json"]  # the password file is gone
    assert subprocess.run(["docker", "image", "inspect", ssh_lab["pulled"]], capture_output=True).returncode == 0
    hc = json.loads((ssh_lab["tmp"] / "reports" / h2.name / "healthcheck.json").read_text())
    assert hc["healthy"] and [e["engine"] for e in hc["endpoints"]] == ["llamacpp"]

    t0 = time.monotonic()
    second = lab_pyinfra(inv, "-y", "--json", vault_pw=pw)
    t_second = time.monotonic() - t0
    assert second.returncode == 0 and summary(second)["totals"]["success"] == 0, second.stderr[-6000:]
    print(f"\npyinfra on a docker.io host (replaced by Docker's packages, vault, registry login, pull): first run "
          f"{t_first:.0f}s, second run {t_second:.0f}s (no change)")

    # the same host with no vault and no secret files: the token on the host stays, one line says why
    bare = inv.parent.parent / "inventory-novault"
    (bare / "group_vars" / "gpu_hosts").mkdir(parents=True)
    settings = yaml.safe_load((inv.parent / "group_vars" / "gpu_hosts" / "main.yml").read_text())
    settings.pop("docker_registry_logins")
    (bare / "group_vars" / "gpu_hosts" / "main.yml").write_text(yaml.safe_dump(settings))
    (bare / "hosts.yml").write_text(inv.read_text())
    line = one_line(lab_pyinfra(bare / "hosts.yml", "-y"), h2.name)
    assert "hf_secret_token_file is not set and vault_hf_token is empty or missing" in line, line
    assert h2.exec(f"cat {token_file}").stdout == vault["vault_hf_token"]

    # an air-gapped lab (one switch: no registry) with an image the host lacks: stops naming the image and the
    # setting, pulls nothing and leaves the running engine as it is
    running = project_containers(ssh_lab["project2"])
    absent = f"{ssh_lab['registry'].host}/gik/absent:1"
    r = lab_pyinfra(inv, "-y", "--data", "inference_stack_airgapped=true", "--data",
                    f"inference_stack_llamacpp_image={absent}", vault_pw=pw)
    assert r.returncode != 0 and "Traceback" not in r.stdout + r.stderr
    assert f"image llamacpp ({absent}) is not on {h2.name} and inference_stack_image_pull is never" in \
        r.stdout + r.stderr, r.stderr[-3000:]
    assert project_containers(ssh_lab["project2"]) == running
    assert subprocess.run(["docker", "image", "inspect", absent], capture_output=True).returncode != 0


def test_workstation_defaults_dry_run() -> None:
    """The README command with no settings at all: `pyinfra @local pyinfra/deploy.py --dry` plans this workstation
    from the lab's files plus the workstation defaults (no GPU here: CPU overlay). A connected workstation (the
    default) keeps every engine, compose pulls a missing image; an air-gapped one (one switch) leaves out the engines
    whose image it lacks, with a message."""
    if Path("/opt/gpu-inference-kit").exists():
        pytest.skip("a deployment lives in the default folder on this machine")
    ollama = subprocess.run(["docker", "image", "inspect", "ollama/ollama:0.12.6"], capture_output=True)
    for data in ([], ["--data", "inference_stack_airgapped=true"]):
        r = subprocess.run([str(BIN / "pyinfra"), "@local", "pyinfra/deploy.py", "--dry", "--diff", *data], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "GIK_BIN": str(BIN)})
        assert r.returncode == 0, r.stderr[-3000:]
        out = r.stdout + r.stderr
        assert "COMPOSE_FILE=compose.yaml:compose.cpu.yaml" in out and "BIND_ADDRESS=127.0.0.1" in out
        assert f"MODELS_DIR={CACHE / 'models'}" in out
        assert ("no ollama image" in out) == (bool(data) and ollama.returncode != 0), out[-3000:]
        assert not Path("/opt/gpu-inference-kit").exists()
