"""The connected lab, as it happens: site.yml on a container-lab host with the DEFAULT image and Hub settings
(pull what is missing, the Hub used), one line naming the model (a gated repository on the lab's Hub mirror),
the token in an encrypted vault, the llama.cpp image in a private registry that needs a login, and the engines'
downloads going out through an HTTP proxy.

Real parts: Debian's docker-registry with basic auth on 127.0.0.1 (tests/lab/connected.py says why not a
registry-mirrors entry), tinyproxy, the real vLLM CPU image downloading the model with huggingface_hub inside its
container, and a Hub mirror faithful to huggingface_hub's protocol (tests/doubles/hub_mirror.py: gated answers
401/403 as the Hub does). The mirror listens on 127.0.0.77, which containers cannot reach except through the
proxy (the proxy runs on this machine): the proxy is the engines' only way to the Hub.

What it proves: the deploy stops naming the cause without a token, with a token not granted access and with a
token the Hub rejects; with the right token vLLM downloads the model once (through the proxy), a second run
changes nothing and downloads nothing, a restart downloads nothing; the private registry's image is pulled after
a login whose credentials are root-only; the token is in no output, proxy log line, docker inspect, container
log or process environment.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import free_port
from doubles import hub_mirror
from lab.connected import Proxy, Registry, docker0_address
from lab.lab import Host, Lab, sh

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))
HF_DIR = CACHE / "models" / "smollm2-135m-instruct-hf"
REPO = "gik-lab/SmolLM2-135M-Instruct"
HUB_HOST = "127.0.0.77"  # loopback of this machine: containers reach it only through the proxy


def playbook(env: dict, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", str(env["inventory"]),
                           "--vault-password-file", str(env["vault_pass"]), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "GIK_BIN": str(BIN)})


def recap(out: str, host: str = "lab1") -> dict[str, int]:
    m = re.search(rf"^{host}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
    assert m, out[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()), strict=True))


def write_vault(env: dict, token: str) -> None:
    """The lab's secrets as the README says: an ansible-vault encrypted vault.yml beside the group's settings."""
    vault = env["inventory"].parent / "group_vars" / "gpu_hosts" / "vault.yml"
    vault.write_text(yaml.safe_dump({"vault_hf_token": token, "vault_vllm_api_key": "",
                                     "vault_registry_password": env["registry_password"]}))
    r = subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(env["vault_pass"]),
                        str(vault)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert token not in vault.read_text() or not token


def docker_docs_setup(host: Host, lab: Lab) -> None:
    """Docker's repository set up by hand before the kit arrives: the current guide's deb822 docker.sources
    (Signed-By /etc/apt/keyrings/docker.asc), over what an older guide left (docker.list, a dearmored docker.gpg).
    docs.docker.com/engine/install/debian; the mirror's URL stands for download.docker.com/linux."""
    uri = f"{lab.mirror_url}/docker/debian"
    host.exec("mkdir -p /etc/apt/keyrings && python3 -c \"import urllib.request,sys; sys.stdout.buffer.write("
              f"urllib.request.urlopen('{uri}/gpg').read())\" > /etc/apt/keyrings/docker.asc && "
              "chmod a+r /etc/apt/keyrings/docker.asc && "
              "gpg --dearmor -o /etc/apt/keyrings/docker.gpg < /etc/apt/keyrings/docker.asc")
    host.exec("printf 'Types: deb\\nURIs: %s\\nSuites: bookworm\\nComponents: stable\\nSigned-By: "
              f"/etc/apt/keyrings/docker.asc\\n' {uri} > /etc/apt/sources.list.d/docker.sources && echo "
              f"'deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.gpg] {uri} bookworm stable' "
              "> /etc/apt/sources.list.d/docker.list")
    r = host.exec("apt-get update 2>&1", check=False)
    assert "Conflicting values set for option Signed-By" in r.stdout, r.stdout  # apt refuses the host as it is


def project_containers(project: str) -> list[str]:
    return sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()


@pytest.fixture(scope="module")
def connected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    for tool in ("docker-registry", "tinyproxy", "gpg", "ssh-keygen"):
        if shutil.which(tool) is None:
            pytest.fail(f"the connected lab needs {tool}: run `bash tests/setup.sh docker`", pytrace=False)
    for image in ("local/vllm-cpu:0.32.0", "local/llama.cpp:server"):
        if sh("docker", "image", "inspect", image, check=False).returncode != 0:
            pytest.fail(f"{image} is missing: run `bash tests/setup.sh`", pytrace=False)
    if not (HF_DIR / "model.safetensors").is_file():
        pytest.fail(f"{HF_DIR} is missing: run `bash tests/setup.sh model`", pytrace=False)
    tmp = tmp_path_factory.mktemp("connected")
    t0 = time.monotonic()
    good, other = "hf_lab" + secrets.token_hex(12), "hf_other" + secrets.token_hex(12)
    hub = hub_mirror.serve({REPO: HF_DIR}, gated={REPO}, grants={good: {REPO}, other: set()}, host=HUB_HOST)
    proxy = Proxy.start(tmp)
    password = "reg-" + secrets.token_hex(10)
    registry = Registry.start(tmp, auth=("lab", password))
    lab: Lab | None = None
    project = "gik-conn-" + secrets.token_hex(3)
    try:
        # the official name of llama.cpp's image, in the lab's private registry; not on this machine under it
        llama_ref = registry.push("local/llama.cpp:server", f"ggml-org/llama.cpp:server-{secrets.token_hex(3)}")
        t_parts = time.monotonic() - t0
        lab = Lab.start(tmp, 1, [CACHE / "models"])
        print(f"\nconnected lab up in {time.monotonic() - t0:.1f}s (hub mirror, proxy, private registry with the "
              f"llama.cpp image pushed in {t_parts:.1f}s, 1 SSH host)")
        proxy_url = f"http://{docker0_address()}:{proxy.port}"
        group_vars = {
            # the connected lab's whole model setting: a Hub repository id (images and Hub: the defaults)
            "inference_stack_vllm_model": REPO,
            # where this lab's Hub, proxy and private registry are
            "inference_stack_hf_endpoint": f"http://{HUB_HOST}:{hub.server_address[1]}",
            "inference_stack_http_proxy": proxy_url, "inference_stack_https_proxy": proxy_url,
            "inference_stack_llamacpp_image": llama_ref,
            "docker_registry_logins": [{"registry": registry.host, "username": "lab",
                                        "password": "{{ vault_registry_password }}"}],
            # this machine: no GPU, Docker's packages from the lab's mirror, dockerd shared through its socket
            "inference_stack_gpu": False, "docker_install_from": "docker",
            "docker_repo_base": f"{lab.mirror_url}/docker", "docker_manage_service": False,
            "docker_daemon_options": {"exec-opts": ["native.cgroupdriver=cgroupfs"]},
            "inference_stack_engines": ["vllm", "llamacpp"], "inference_stack_bind_address": "127.0.0.1",
            "inference_stack_models_dir": str(CACHE / "models"), "inference_stack_wait_timeout": 900,
            "inference_stack_vllm_max_model_len": 1024,
            "preflight_disk_path": "/var/lib/docker", "preflight_min_free_disk_gb": 2,
            "verify_gpu_memory": False, "verify_num_prompts": 2, "verify_output_len": 8,
            "verify_reports_dir": str(tmp / "reports"),
        }
        host = lab.hosts[0]
        host_vars = {host.name: {"inference_stack_dir": str(host.root / "opt"),
                                 "inference_stack_project_name": project, "inference_stack_vllm_port": free_port(),
                                 "inference_stack_llamacpp_port": free_port()}}
        inventory = lab.inventory(group_vars, host_vars)
        docker_docs_setup(host, lab)
        vault_pass = tmp / "vault-pass"
        vault_pass.write_text(secrets.token_hex(16) + "\n")
        vault_pass.chmod(0o600)
        env = {"lab": lab, "host": host, "inventory": inventory, "vault_pass": vault_pass, "hub": hub, "proxy": proxy,
               "registry": registry, "registry_password": password, "llama_ref": llama_ref, "good": good,
               "other": other, "project": project, "tmp": tmp, "opt": host.root / "opt"}
        yield env
    finally:
        sh("docker", "compose", "-p", project, "down", "-v", "--remove-orphans", check=False, timeout=300)
        if lab is not None:
            lab.stop()
        for ref in [r for r in sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
                    if r.startswith(registry.host + "/")]:
            sh("docker", "rmi", ref, check=False)
        registry.stop()
        proxy.stop()
        hub.shutdown()
        hub.server_close()


def _no_secret_in_outputs(env: dict, token: str, *outputs: str) -> None:
    blob = "".join(outputs) + env["proxy"].log.read_text(errors="replace")
    for secret in (token, env["registry_password"]):
        if secret:
            assert secret not in blob


def test_a_gated_model_without_the_right_token_stops_the_deploy_naming_the_cause(connected: dict) -> None:
    t0 = time.monotonic()
    cases = [  # (vault_hf_token, the one line the deploy must stop with)
        ("", f"vLLM cannot get its model: {REPO} is a gated repository and no Hugging Face token was given"),
        (connected["other"], f"vLLM cannot get its model: {REPO} is a gated repository and the token in the "
                             "hf_token secret was not granted access to it"),
        ("hf_revoked" + secrets.token_hex(8), "vLLM cannot get its model: the Hub at "
                                              f"http://{HUB_HOST}:{connected['hub'].server_address[1]} rejected the "
                                              "token in the hf_token secret (invalid or revoked)"),
    ]
    for i, (token, line) in enumerate(cases):
        write_vault(connected, token)
        # the first run sets the host up from nothing; then only the secret and the deploy change
        args = () if i == 0 else ("--tags", "hf_secret,inference_stack")
        r = playbook(connected, *args)
        assert r.returncode != 0, r.stdout[-4000:]
        assert line in r.stdout, r.stdout[-5000:]
        assert "Traceback" not in r.stdout
        _no_secret_in_outputs(connected, token, r.stdout, r.stderr)
    # Docker's repository: the documented docker.sources only (the older docker.list removed), apt content
    sources = connected["host"].exec("ls /etc/apt/sources.list.d").stdout.split()
    assert sources == ["docker.sources", "lab-distro.list"], sources
    upd = connected["host"].exec("apt-get update 2>&1", check=False)
    assert upd.returncode == 0 and "Conflicting" not in upd.stdout and "configured multiple times" not in upd.stdout, (
        upd.stdout)
    assert "Signed-By: /etc/apt/keyrings/docker.asc" in connected["host"].exec(
        "cat /etc/apt/sources.list.d/docker.sources").stdout
    # nothing was downloaded, and the Hub was asked through the proxy
    hub = connected["hub"]
    assert hub_mirror.downloads(hub, ".safetensors") + hub_mirror.ranged(hub, ".safetensors") == 0
    hub_host = f"{HUB_HOST}:{connected['hub'].server_address[1]}"
    assert any(f"HEAD http://{hub_host}/{REPO}/resolve/main/config.json" in q for q in connected["proxy"].requests())
    print(f"\nconnected lab: three refused tokens named in {time.monotonic() - t0:.0f}s")


def test_the_connected_lab_pulls_downloads_serves_and_then_changes_nothing(connected: dict) -> None:
    env, host, hub, proxy = connected, connected["host"], connected["hub"], connected["proxy"]
    token = env["good"]
    write_vault(env, token)
    t0 = time.monotonic()
    first = playbook(env)
    t_first = time.monotonic() - t0
    assert first.returncode == 0, first.stdout[-8000:] + first.stderr[-2000:]
    assert recap(first.stdout)["changed"] > 0
    _no_secret_in_outputs(env, token, first.stdout, first.stderr)

    # the model: downloaded once by vLLM in its container, from the mirror, through the proxy
    assert hub_mirror.downloads(hub, "model.safetensors") == 1
    hub_host = f"{HUB_HOST}:{hub.server_address[1]}"
    assert any(re.match(rf"GET http://{re.escape(hub_host)}/{REPO}/resolve/\w+/model\.safetensors", q)
               for q in proxy.requests()), proxy.requests()[-10:]
    dotenv = host.exec(f"cat {env['opt']}/compose/.env").stdout
    assert "HF_HUB_OFFLINE=0" in dotenv and f"VLLM_MODEL={REPO}" in dotenv
    assert f"HF_ENDPOINT=http://{hub_host}" in dotenv
    # the image: pulled from the private registry after a login kept in root's Docker config, mode 0600
    assert sh("docker", "image", "inspect", env["llama_ref"], check=False).returncode == 0
    auth = host.exec("stat -c '%U %a' /root/.docker/config.json && cat /root/.docker/config.json").stdout
    assert auth.splitlines()[0] == "root 600" and env["registry"].host in auth
    # verified: both engines served by the deploy's own healthcheck
    hc = json.loads((env["tmp"] / "reports" / host.name / "healthcheck.json").read_text())
    assert hc["healthy"] and sorted(e["engine"] for e in hc["endpoints"]) == ["llamacpp", "vllm"], hc

    # token hygiene on the download path: docker inspect, container logs, every process's environment
    ids = project_containers(env["project"])
    assert len(ids) == 3, ids  # vllm, vllm-model-check, llamacpp
    inspect = sh("docker", "inspect", *ids).stdout
    logs = "".join(sh("docker", "logs", i, check=False).stdout + sh("docker", "logs", i, check=False).stderr
                   for i in ids)
    environ = b"".join(subprocess.run(["docker", "exec", i, "sh", "-c", "cat /proc/[0-9]*/environ 2>/dev/null"],
                                      capture_output=True, timeout=60).stdout for i in ids)
    assert token not in inspect + logs and token.encode() not in environ
    assert "HF_TOKEN=" not in inspect and '"HF_TOKEN_PATH=/run/secrets/hf_token"' in inspect

    # a second run: nothing changes, nothing is pulled or downloaded again
    t0 = time.monotonic()
    second = playbook(env)
    t_second = time.monotonic() - t0
    assert second.returncode == 0, second.stdout[-6000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]
    assert hub_mirror.downloads(hub, "model.safetensors") == 1
    _no_secret_in_outputs(env, token, second.stdout, second.stderr)

    # a restart of vLLM loads the model from the persistent Hub cache: still one download
    vllm_id = sh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={env['project']}",
                 "--filter", "label=com.docker.compose.service=vllm").stdout.strip()
    sh("docker", "restart", vllm_id, timeout=120)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = sh("docker", "inspect", "-f", "{{.State.Health.Status}}", vllm_id).stdout.strip()
        if status == "healthy":
            break
        assert status in ("starting", ""), sh("docker", "logs", "--tail", "40", vllm_id, check=False).stderr
        time.sleep(3)
    assert status == "healthy"
    assert hub_mirror.downloads(hub, "model.safetensors") == 1
    print(f"\nconnected lab site.yml: first run {t_first:.0f}s (pull + download + verify), second run "
          f"{t_second:.0f}s (changed=0, nothing downloaded), {len(proxy.requests())} requests through the proxy")
