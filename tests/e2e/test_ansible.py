"""Ansible: lint and syntax; site.yml against this machine (no GPU, offline CPU images, vLLM + llama.cpp),
then the testinfra suite against it, then a second run that must report changed=0; bad input stops the play
before any change, naming the variable."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))



def ansible(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "GIK_BIN": str(BIN), **(env or {})})


def recap(out: str) -> dict[str, int]:
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    assert m, out[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()), strict=True))


def test_ansible_lint_production_profile() -> None:
    r = ansible("ansible-lint", "--profile", "production", "--offline", "site.yml", "playbooks/", "roles/")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]


def test_ansible_lint_production_profile_on_the_repository_root() -> None:
    """What a contributor runs: `ansible-lint --profile production` with no paths (.ansible-lint scopes it)."""
    r = ansible("ansible-lint", "--profile", "production", "--offline")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "compose/compose.yaml" not in r.stdout


def test_syntax_check() -> None:
    for inv in ("inventory/hosts.yml", "inventory/local.yml"):
        r = ansible("ansible-playbook", "site.yml", "-i", inv, "--syntax-check")
        assert r.returncode == 0, r.stderr


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict]:
    """A CI inventory for this machine, its group_vars, and an encrypted vault with a fake token."""
    token = "hf_ansible" + secrets.token_hex(10)
    vllm_key = "sk-gik-" + secrets.token_hex(12)  # a keyed lab: verify must pass vLLM its key
    inv_dir = tmp_path / "inventory"
    (inv_dir / "group_vars" / "gpu_hosts").mkdir(parents=True)
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    project = "gik-ansible-" + secrets.token_hex(3)
    tarball = tmp_path / "llama.cpp-server.tar"  # the air-gapped path: an image shipped as a `docker save` tarball
    subprocess.run(["docker", "save", "-o", str(tarball), "local/llama.cpp:server"], check=True, timeout=300)
    settings = {
        "inference_stack_gpu": False,
        "inference_stack_engines": ["vllm", "llamacpp"],
        "inference_stack_bind_address": "127.0.0.1",
        "inference_stack_vllm_port": free_port(),
        "inference_stack_llamacpp_port": free_port(),
        "inference_stack_dir": str(tmp_path / "opt"),
        "inference_stack_project_name": project,
        "inference_stack_models_dir": str(CACHE / "models"),
        "inference_stack_wait_timeout": 900,
        "inference_stack_image_tarballs": [str(tarball)],
        "docker_install_from": "distro",
        "docker_manage_service": False,  # dockerd runs without an init system here
        "preflight_disk_path": "/",
        "preflight_min_free_disk_gb": 5,
        "verify_num_prompts": 4,
        "verify_output_len": 16,
        "verify_reports_dir": str(tmp_path / "reports"),
    }
    (inv_dir / "group_vars" / "gpu_hosts" / "main.yml").write_text(yaml.safe_dump(settings))
    vault = inv_dir / "group_vars" / "gpu_hosts" / "vault.yml"
    vault.write_text(yaml.safe_dump({"vault_hf_token": token, "vault_vllm_api_key": vllm_key}))
    pw = tmp_path / "vault-pass"
    pw.write_text(secrets.token_hex(16))
    r = ansible("ansible-vault", "encrypt", str(vault), "--vault-password-file", str(pw))
    assert r.returncode == 0, r.stderr
    assert token not in vault.read_text()
    yield {"inventory": inv_dir / "hosts.yml", "pw": pw, "token": token, "vllm_key": vllm_key, "settings": settings,
           "project": project, "tmp": tmp_path}
    if (tmp_path / "opt" / "compose").is_dir():
        subprocess.run(["docker", "compose", "-p", project, "down", "-v", "--remove-orphans"],
                       cwd=tmp_path / "opt" / "compose", capture_output=True, timeout=300)


def test_site_yml_deploys_verifies_and_is_idempotent(lab: dict) -> None:
    args = ("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), "--vault-password-file", str(lab["pw"]))
    t0 = time.monotonic()
    first = ansible(*args)
    t_first = time.monotonic() - t0
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert recap(first.stdout)["failed"] == 0
    assert lab["token"] not in first.stdout + first.stderr
    assert lab["vllm_key"] not in first.stdout + first.stderr
    assert not list(Path(tempfile.gettempdir()).glob("gik-vllm-key-*")), "the controller's key copy was left behind"
    loaded = r"TASK \[inference_stack : Load image tarballs that are new or changed\][^\n]*\n+changed:"
    assert re.search(loaded, first.stdout), "the image tarball was not loaded"

    reports = lab["tmp"] / "reports" / "localhost"
    hc = yaml.safe_load((reports / "healthcheck.json").read_text())
    assert hc["healthy"] and sorted(e["engine"] for e in hc["endpoints"]) == ["llamacpp", "vllm"]
    # one healthcheck run for all engines; the keyed vLLM really refuses requests without its key
    assert first.stdout.count("TASK [verify : Run healthcheck once for every engine of the host]") == 1
    port = lab["settings"]["inference_stack_vllm_port"]
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 401
    assert lab["vllm_key"] not in (reports / "healthcheck.json").read_text()
    assert (reports / "bench.json").is_file() and (reports / "bench.png").stat().st_size > 10_000

    infra = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "tests" / "infra"), "-q", "-p",
                            "no:cacheprovider", "--hosts=ansible://gpu_hosts",
                            f"--ansible-inventory={lab['inventory']}", "-o", "addopts="],
                           cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(lab["pw"]),
                                "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    assert infra.returncode == 0, infra.stdout[-4000:] + infra.stderr[-2000:]
    assert "passed" in infra.stdout
    assert lab["token"] not in infra.stdout + infra.stderr

    t0 = time.monotonic()
    second = ansible(*args)
    t_second = time.monotonic() - t0
    assert second.returncode == 0, second.stdout[-6000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]
    print(f"\nsite.yml first run {t_first:.0f}s, second run {t_second:.0f}s (changed=0)")

    check = ansible(*args, "--check", "--diff")
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check.stdout)["changed"] == 0

    # playbooks/verify.yml finds the kit's CLIs from the roles' place, not the playbook's (no GIK_BIN here)
    verify = ansible("ansible-playbook", "playbooks/verify.yml", "-i", str(lab["inventory"]), "--vault-password-file",
                     str(lab["pw"]), env={"GIK_BIN": ""})
    assert verify.returncode == 0, verify.stdout[-4000:]
    assert "playbooks/.venv" not in verify.stdout and recap(verify.stdout)["failed"] == 0

    teardown(lab, args[2:], "Bring the compose project down")


@pytest.mark.parametrize(("override", "needle"), [
    ({"inference_stack_engines": ["vllm", "tgi"]}, "inference_stack_engines"),
    ({"inference_stack_vllm_port": "eighty"}, "inference_stack_vllm_port"),
    ({"inference_stack_llamacpp_port": "SAME"}, "port clash"),
    ({"docker_install_from": "snap"}, "docker_install_from"),
    ({"inference_stack_gpu": "maybe"}, "inference_stack_gpu"),
    # roles late in the play are validated up front too (before the driver, Docker or the stack change)
    ({"verify_num_prompts": "many"}, "verify_num_prompts"),
    ({"docker_daemon_options": ["registry-mirrors"]}, "docker_daemon_options"),
    ({"container_toolkit_daemon_json_owner": "both"}, "container_toolkit_daemon_json_owner"),
    ({"nvidia_driver_fabricmanager": "sometimes"}, "nvidia_driver_fabricmanager"),
])
def test_bad_input_stops_before_any_change(lab: dict, override: dict, needle: str) -> None:
    settings = dict(lab["settings"])
    for k, v in override.items():
        settings[k] = settings["inference_stack_vllm_port"] if v == "SAME" else v
    (lab["inventory"].parent / "group_vars" / "gpu_hosts" / "main.yml").write_text(yaml.safe_dump(settings))
    r = ansible("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), "--vault-password-file",
                str(lab["pw"]), timeout=300)
    assert r.returncode != 0
    assert needle in r.stdout + r.stderr, r.stdout[-3000:]
    assert recap(r.stdout)["changed"] == 0
    assert not (lab["tmp"] / "opt").exists(), "a change was made before the bad value was caught"


def test_missing_vault_value_stops_before_any_change(lab: dict) -> None:
    (lab["inventory"].parent / "group_vars" / "gpu_hosts" / "vault.yml").unlink()
    r = ansible("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), timeout=300)
    assert r.returncode != 0
    assert "vault_hf_token is not set" in r.stdout
    assert recap(r.stdout)["changed"] == 0 and not (lab["tmp"] / "opt").exists()


def test_gpu_roles_check_mode_on_a_host_without_network(tmp_path: Path) -> None:
    """nvidia_driver and container_toolkit with inference_stack_gpu=true in --check: nothing fetched or changed,
    and they say what a real run would install."""
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    (tmp_path / "group_vars" / "gpu_hosts.yml").write_text(yaml.safe_dump(
        {"inference_stack_gpu": True, "vault_hf_token": ""}))
    r = ansible("ansible-playbook", "site.yml", "-i", str(tmp_path / "hosts.yml"), "--check",
                "--tags", "nvidia_driver,container_toolkit", timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    # check mode is truthful on a fresh host (issue 20): the two "would install" reports are its only changes
    assert recap(r.stdout) == {"ok": recap(r.stdout)["ok"], "changed": 2, "unreachable": 0, "failed": 0}
    driver = re.search(r"localhost would install: ([^\"]*)", r.stdout)
    assert driver and "nvidia-open=580.*" in driver.group(1) and "cuda-toolkit-12-8" in driver.group(1)
    assert "would install: nvidia-container-toolkit=1.18.0-1, nvidia-container-toolkit-base=1.18.0-1" in r.stdout


def test_site_yml_on_a_compose_v1_host(lab: dict) -> None:
    """A host with only docker-compose v1 (no --wait): the role waits for Docker's own health status
    (compose/wait-healthy.sh), so every container is healthy when the play moves on; a re-run changes nothing.
    llama.cpp alone: the role's v1 path is the same for every engine, and vLLM with the service it depends on
    (its model check) under v1 is tests/e2e/test_compose.py's stack_up[v1]."""
    args = ("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), "--vault-password-file", str(lab["pw"]),
            "-e", "docker_compose_version=v1", "-e", '{"inference_stack_engines": ["llamacpp"]}')
    first = ansible(*args)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    assert "TASK [inference_stack : Bring the engines up (compose v1)]" in first.stdout
    assert "TASK [inference_stack : Wait until Docker reports the engines healthy (compose v1 has no --wait)]" \
        in first.stdout
    ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={lab['project']}"],
                         capture_output=True, text=True, check=True).stdout.split()
    # the chosen engine, and only it, healthy
    rows = subprocess.run(["docker", "inspect", "-f",
                           '{{index .Config.Labels "io.gpu-inference-kit.engine"}}={{.State.Health.Status}}', *ids],
                          capture_output=True, text=True, check=True).stdout.split()
    assert sorted(r.split("=")[0] for r in rows) == ["llamacpp"], rows
    assert {r.split("=")[1] for r in rows} == {"healthy"}, rows
    hc = yaml.safe_load((lab["tmp"] / "reports" / "localhost" / "healthcheck.json").read_text())
    assert hc["healthy"] and [e["engine"] for e in hc["endpoints"]] == ["llamacpp"]
    assert lab["token"] not in first.stdout + first.stderr and lab["vllm_key"] not in first.stdout + first.stderr
    second = ansible(*args)
    assert second.returncode == 0, second.stdout[-6000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]
    teardown(lab, args[2:], "Bring the compose project down (compose v1)")


def teardown(lab: dict, args: tuple[str, ...], task: str) -> None:
    """playbooks/teardown.yml with the compose the deploy used: every container of the project is gone, the
    volumes are kept, and a second teardown changes nothing."""
    down = ansible("ansible-playbook", "playbooks/teardown.yml", *args, timeout=600)
    assert down.returncode == 0, down.stdout[-4000:]
    assert f"TASK [{task}]" in down.stdout and recap(down.stdout)["changed"] == 1, down.stdout[-4000:]
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={lab['project']}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []
    again = ansible("ansible-playbook", "playbooks/teardown.yml", *args, timeout=600)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-4000:]


def test_command_line_strings_work_as_booleans(lab: dict) -> None:
    """`-e name=false` reaches the roles as the string "false": every conditional casts it (ansible-core 2.19
    refuses a string conditional)."""
    r = ansible("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), "--vault-password-file", str(lab["pw"]),
                "--check", "--tags", "preflight,proxy,nvidia_driver,container_toolkit,docker",
                "-e", "inference_stack_gpu=false", "-e", "docker_manage_service=false",
                "-e", "nvidia_driver_skip_reboot=true", "-e", "preflight_require_vault=true", timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
    assert recap(r.stdout)["failed"] == 0 and recap(r.stdout)["changed"] == 0
    assert "would install nvidia-open" not in r.stdout  # "false" really is false


def test_ini_inventory_values_reach_the_roles_converted(lab: dict) -> None:
    """An INI inventory gives every value as text ("vllm,llamacpp", "0,1" becomes a list, a port is text): the
    settings check converts them for the roles, so preflight and the rendered .env see what YAML would give."""
    s = lab["settings"]
    main = lab["inventory"].parent / "group_vars" / "gpu_hosts" / "main.yml"
    main.write_text(yaml.safe_dump({k: v for k, v in s.items() if k not in (
        "inference_stack_engines", "inference_stack_vllm_port", "inference_stack_gpu")}))
    ini = lab["inventory"].parent / "hosts.ini"
    ini.write_text(f"[gpu_hosts]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable} "
                   f"inference_stack_engines=vllm,llamacpp inference_stack_gpu_ids=0,1 inference_stack_gpu=false "
                   f"inference_stack_vllm_port={s['inference_stack_vllm_port']}\n")
    r = ansible("ansible-playbook", "site.yml", "-i", str(ini), "--vault-password-file", str(lab["pw"]),
                "--check", "--diff", "--tags", "preflight,inference_stack", timeout=600)
    assert r.returncode == 0, r.stdout[-5000:]
    assert recap(r.stdout)["failed"] == 0
    assert "+VLLM_GPUS=0,1\n" in r.stdout and "+LLAMACPP_GPUS=0,1\n" in r.stdout, r.stdout[-5000:]
    # -e name=a,b outranks the conversion: one line naming the setting and the form to use
    bad = ansible("ansible-playbook", "site.yml", "-i", str(ini), "--vault-password-file", str(lab["pw"]),
                  "--check", "--tags", "preflight", "-e", "inference_stack_engines=vllm,llamacpp", timeout=300)
    assert bad.returncode != 0
    assert "inference_stack_engines must be a list" in bad.stdout, bad.stdout[-3000:]


# -- typed settings given as text on the command line (-e name=value), checked in the first play --------------------
def _typed_as_text(lab: dict) -> list[str]:
    """`-e name=value` for every typed setting of the stack catalogue: the lab's value, else the catalogue's default."""
    from healthchecks import stack

    args = []
    for s in stack.load().settings.values():
        if s.ansible and s.type in ("int", "float", "bool"):
            value = lab["settings"].get(s.ansible, s.default)
            args += ["-e", f"{s.ansible}={str(value).lower() if isinstance(value, bool) else value}"]
    return args


def test_typed_settings_given_as_text_work(lab: dict) -> None:
    """`-e preflight_min_free_disk_gb=1` stopped the disk check with a Jinja type error: every typed setting of the
    catalogue given as text passes the first play and every role that reads it (--check: no change)."""
    r = ansible("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), "--vault-password-file", str(lab["pw"]),
                "--check", "--skip-tags", "inference_stack", *_typed_as_text(lab),
                "-e", "preflight_min_free_disk_gb=1", timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
    assert recap(r.stdout)["failed"] == 0 and "Check free disk space" in r.stdout


def test_typed_settings_given_as_text_reach_the_stack(lab: dict) -> None:
    r = ansible("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), "--vault-password-file", str(lab["pw"]),
                "--check", "--diff", "--tags", "preflight,inference_stack", *_typed_as_text(lab), timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "+VLLM_GPU_MEMORY_UTILIZATION=0.85\n" in r.stdout


@pytest.mark.parametrize(("extra", "words"), [
    ("preflight_min_free_disk_gb=garbage", "preflight_min_free_disk_gb='garbage' must be a whole number"),
    ("inference_stack_vllm_gpu_memory_utilization=1.5",
     "inference_stack_vllm_gpu_memory_utilization='1.5' must be a fraction in (0, 1]"),
    ("inference_stack_vllm_port=99999", "inference_stack_vllm_port='99999' is not a port number"),
    ("verify_num_prompts=0", "verify_num_prompts='0' must be a positive integer"),
    ("inference_stack_gpu=maybe", "inference_stack_gpu"),
])
def test_bad_typed_text_stops_in_the_first_play(lab: dict, extra: str, words: str) -> None:
    r = ansible("ansible-playbook", "site.yml", "-i", str(lab["inventory"]), "--vault-password-file", str(lab["pw"]),
                "-e", extra, timeout=300)
    assert r.returncode != 0
    assert words in r.stdout, r.stdout[-3000:]
    assert "PLAY [Provision, deploy and verify GPU inference hosts]" not in r.stdout, "not stopped in the first play"
    assert recap(r.stdout)["changed"] == 0 and not (lab["tmp"] / "opt").exists()


def test_verify_runs_the_catalogues_one_command(lab: dict) -> None:
    """playbooks/verify.yml runs exactly healthchecks.stack.verify_commands' healthcheck argv (pyinfra/deploy.py
    calls the same function). No engine runs here, so the healthcheck fails fast and prints its argv."""
    from healthchecks import stack

    s = lab["settings"]
    secrets_dir = lab["tmp"] / "host-secrets"  # the host's secret folder (hf_secret_dir) with vLLM's key
    secrets_dir.mkdir()
    (secrets_dir / "vllm_api_key").write_text(lab["vllm_key"])
    r = ansible("ansible-playbook", "playbooks/verify.yml", "-i", str(lab["inventory"]), "--vault-password-file",
                str(lab["pw"]), "-v", "-e", "verify_wait=1", "-e", "verify_request_timeout=1",
                "-e", f"hf_secret_dir={secrets_dir}", timeout=300)
    assert r.returncode != 0
    ran = [json.loads(m) for m in re.findall(r"^(?:ok|changed|fatal): \[localhost\]:? (?:FAILED! )?=> (\{.*\})$",
                                                r.stdout, re.M) if '"cmd": [' in m]
    ran = [x for x in ran if x["cmd"][0].endswith("/healthcheck")]  # lab-report's command runs after it
    assert len(ran) == 1, r.stdout[-3000:]  # one healthcheck for every engine
    cmd = ran[0]["cmd"]
    key_file = next(a.split("=", 1)[1] for a in cmd if a.startswith("vllm=/"))
    want = stack.verify_commands(
        bin_dir=str(BIN), address="127.0.0.1", engines=s["inference_stack_engines"],
        ports={e: s[f"inference_stack_{e}_port"] for e in s["inference_stack_engines"]},
        models={e: "smollm2:135m" for e in s["inference_stack_engines"]}, key_files={"vllm": key_file}, gpu=False,
        reports=f"{s['verify_reports_dir']}/localhost", wait=1, request_timeout=1, smoke_bench=True,
        num_prompts=s["verify_num_prompts"], concurrency=4, output_len=s["verify_output_len"])
    assert cmd == want["healthcheck"]
