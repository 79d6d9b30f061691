"""The pyinfra deployer renders the same bytes as the Ansible roles: ``.env`` (inference_stack's env.j2),
``daemon.json`` (docker's daemon.json.j2) and the secret files (hf_secret), for the default settings and for a
non-default set. Ansible's side runs the roles' own tasks (one ansible-playbook run, one local host per case); the
settings validation is held to the roles' argument specs and asserts."""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_ops  # noqa: E402
import gik_settings as gs  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    # the lab's settings as shipped (inventory/group_vars/gpu_hosts + role defaults)
    "defaults": {},
    # everything the .env and daemon.json carry, set away from its default; strings where Ansible reads types
    "custom": {
        "inference_stack_gpu": "false",
        "inference_stack_engines": ["vllm", "llamacpp"],
        "inference_stack_project_name": "gik-custom",
        "inference_stack_bind_address": "127.0.0.1",
        "inference_stack_vllm_port": 18000,
        "inference_stack_ollama_port": "21434",
        "inference_stack_llamacpp_port": 18080,
        "inference_stack_gpu_ids": "0,1",
        "inference_stack_models_dir": "/data/models",
        "inference_stack_hf_hub_offline": "no",
        "inference_stack_vllm_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "inference_stack_vllm_served_model_name": "smol",
        "inference_stack_vllm_max_model_len": 4096,
        "inference_stack_vllm_dtype": "bfloat16",
        "inference_stack_vllm_tensor_parallel_size": 2,
        "inference_stack_vllm_gpu_memory_utilization": 0.5,
        "inference_stack_vllm_extra_args": "--enable-prefix-caching --max-num-seqs 8",
        "inference_stack_llamacpp_model": "/models/other.gguf",
        "inference_stack_llamacpp_model_alias": "other",
        "inference_stack_vllm_image": "registry.lab:5000/vllm-openai:v0.11.2",
        "inference_stack_llamacpp_image": "local/llama.cpp:server",
        "inference_stack_ollama_image": "registry.lab:5000/ollama:0.12.6",
        "inference_stack_image_tarballs": ["/srv/images/vllm.tar", "/srv/images/llamacpp.tar"],
        "docker_log_max_size": "10m",
        "docker_log_max_file": 7,
        "docker_live_restore": "no",
        "docker_data_root": "/data/docker",
    },
    # a GPU host with engines as Ansible's comma string, ports as strings, bools as yes/no
    "gpu_strings": {
        "inference_stack_gpu": "yes",
        "inference_stack_engines": "ollama,vllm",
        "inference_stack_vllm_port": "9000",
        "inference_stack_ollama_port": "9434",
        "inference_stack_hf_hub_offline": "true",
        "inference_stack_ollama_gguf": "",
        "inference_stack_vllm_tensor_parallel_size": "1",
    },
    # GPUs split between engines: vLLM alone on 0,1; llama.cpp and Ollama share 2 (the rest follow gpu_ids)
    "split_gpus": {
        "inference_stack_gpu": True,
        "inference_stack_gpu_ids": "2",
        "inference_stack_vllm_gpu_ids": "0,1",
    },
    # nvidia-ctk owns the runtimes in daemon.json: the docker role keeps them from the host's file, merges the
    # lab's own daemon options over its settings
    "ctk": {
        "inference_stack_gpu": True,
        "container_toolkit_daemon_json_owner": "nvidia_ctk",
        "docker_daemon_options": {"registry-mirrors": ["http://mirror.lab:5000"], "log-opts": {"max-file": "9"}},
    },
}
# the host's daemon.json before the run, per case (what the role's slurp reads)
CURRENT = {"ctk": json.dumps({"runtimes": {"nvidia": {"args": [], "path": "/usr/bin/nvidia-container-runtime"}},
                              "default-runtime": "nvidia", "debug": True})}


def _walk(tasks: Any) -> Any:
    for t in tasks or []:
        if isinstance(t, dict):
            yield t
            for key in ("block", "rescue", "always"):
                yield from _walk(t.get(key))


def _tasks(role: str, match: str) -> list[dict[str, Any]]:
    """The role's own task that renders ``match`` (whichever of its task files holds it), with the destination
    under the case's folder where it would write outside it."""
    found = [t for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml"))
             for t in _walk(yaml.safe_load(path.read_text()))
             if isinstance(t.get("ansible.builtin.template"), dict)
             and t["ansible.builtin.template"].get("src") == match]
    assert found, f"roles/{role}/tasks/ has no template task for {match}"
    task = copy.deepcopy(found[0])
    for key in ("notify", "when"):
        task.pop(key, None)
    if not str(task["ansible.builtin.template"]["dest"]).startswith("{{ inference_stack_dir }}"):
        task["ansible.builtin.template"]["dest"] = "{{ inference_stack_dir }}/" + Path(
            task["ansible.builtin.template"]["dest"]).name
    return [task]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the roles (ansible-playbook, local connection) once for every case; return where each case lives."""
    tmp = tmp_path_factory.mktemp("render")
    roles = tmp / "roles"
    for role in ("hf_secret", "inference_stack", "docker"):
        shutil.copytree(ROOT / "roles" / role, roles / role)
    for d in ("compose", "healthchecks"):  # the kit beside the roles (inference_stack_kit_root: compose.yaml's labels)
        (tmp / d).symlink_to(ROOT / d)
    (roles / "inference_stack" / "tasks" / "gik_render.yml").write_text(yaml.safe_dump(_tasks("inference_stack",
                                                                                               "env.j2")))
    (roles / "docker" / "tasks" / "gik_render.yml").write_text(yaml.safe_dump(_tasks("docker", "daemon.json.j2")))
    inv = tmp / "inventory"
    shutil.copytree(gs.GROUP_VARS, inv / "group_vars" / "gpu_hosts",
                    ignore=lambda d, names: [n for n in names if n.startswith("vault")])
    hosts: dict[str, Any] = {}
    cases: dict[str, Any] = {}
    for name, overrides in CASES.items():
        case_dir = tmp / name
        (case_dir / "compose").mkdir(parents=True)
        token, key = "hf_" + secrets.token_hex(12), ("sk-" + secrets.token_hex(8)) if name == "custom" else ""
        # llama.cpp keyed in the custom case (hf_secret's llamacpp_api_key, LLAMACPP_API_KEY_FILE in the .env)
        llamacpp_key = ("sk-llama-" + secrets.token_hex(8)) if name == "custom" else ""
        hostvars = {**overrides, "inference_stack_dir": str(case_dir)}
        if name == "custom":
            hostvars["hf_secret_dir"] = str(case_dir / "keys")
        hosts[name] = {**hostvars, "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "vault_hf_token": token, "vault_vllm_api_key": key, "vault_llamacpp_api_key": llamacpp_key}
        if name in CURRENT:
            hosts[name]["docker_current_daemon_json"] = {"content": base64.b64encode(CURRENT[name].encode()).decode()}
        token_file, key_file = case_dir / "token.txt", case_dir / "key.txt"
        token_file.write_text(token + "\n")  # as a person writes it; the secret file holds the value only
        key_file.write_text(key)
        llamacpp_key_file = case_dir / "llamacpp_key.txt"
        llamacpp_key_file.write_text(llamacpp_key + "\n" if llamacpp_key else "")
        cases[name] = {"dir": case_dir, "hostvars": hostvars, "token_file": token_file, "key_file": key_file,
                       "llamacpp_key_file": llamacpp_key_file, "token": token, "llamacpp_key": llamacpp_key}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts}}}}))
    # the proxy role runs before inference_stack in site.yml, so its defaults (proxy_no_proxy...) are in scope
    # there; its tasks change the host, so only its defaults are loaded here (no case sets a proxy_* value)
    play = [{"name": "render", "hosts": "gpu_hosts", "gather_facts": False,
             "vars_files": [str(ROOT / "roles" / "proxy" / "defaults" / "main.yml")], "tasks": [
        {"ansible.builtin.import_role": {"name": "hf_secret"}},
        # the digests' salt (files_digest_salt in the secrets folder), which pyinfra reads back from the host
        {"ansible.builtin.import_role": {"name": "inference_stack", "tasks_from": "files_salt"}},
        {"ansible.builtin.import_role": {"name": "inference_stack", "tasks_from": "gik_render"}},
        {"ansible.builtin.import_role": {"name": "docker", "tasks_from": "gik_render"}},
    ]}]
    (tmp / "render.yml").write_text(yaml.safe_dump(play))
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv / "hosts.yml"), str(tmp / "render.yml")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ANSIBLE_ROLES_PATH": str(roles), "ANSIBLE_FORCE_COLOR": "0"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return {"group_vars": inv / "group_vars" / "gpu_hosts", "cases": cases}


def _settings(rendered: dict[str, Any], name: str) -> gs.Settings:
    case = rendered["cases"][name]
    salt = (case["dir"] / ("keys" if name == "custom" else "secrets") / "files_digest_salt").read_text()
    return gs.load({**case["hostvars"], "hf_secret_token_file": str(case["token_file"]),
                    "hf_secret_vllm_api_key_file": str(case["key_file"]),
                    "hf_secret_llamacpp_api_key_file": str(case["llamacpp_key_file"])},
                   group_vars=rendered["group_vars"], files_salt=salt)


@pytest.mark.parametrize("name", list(CASES))
def test_env_and_daemon_json_byte_identical(rendered: dict[str, Any], name: str) -> None:
    s = _settings(rendered, name)
    case_dir = rendered["cases"][name]["dir"]
    assert gs.render_env(s).encode() == (case_dir / "compose" / ".env").read_bytes()
    if name == "split_gpus":  # what Ansible rendered, per engine
        env = (case_dir / "compose" / ".env").read_text()
        assert "VLLM_GPUS=0,1\n" in env and "LLAMACPP_GPUS=2\n" in env and "OLLAMA_GPUS=2\n" in env
    assert gs.render_daemon_json(s, CURRENT.get(name)).encode() == (case_dir / "daemon.json").read_bytes()


@pytest.mark.parametrize("name", list(CASES))
def test_secret_files_byte_identical(rendered: dict[str, Any], name: str) -> None:
    s = _settings(rendered, name)
    secret_dir = Path(s.secret_dir)
    assert secret_dir == (rendered["cases"][name]["dir"] / ("keys" if name == "custom" else "secrets"))
    assert stat.S_IMODE(secret_dir.stat().st_mode) == gik_ops.SECRET_DIR_MODE
    for fname, content in gik_ops.secret_files(s).items():
        f = secret_dir / fname
        assert content.encode() == f.read_bytes(), fname
        assert stat.S_IMODE(f.stat().st_mode) == gik_ops.SECRET_FILE_MODE, fname
    assert gik_ops.secret_files(s)["hf_token"] == rendered["cases"][name]["token"]
    # every file hf_secret writes, pyinfra writes (llama.cpp's key too), and the keyed case's key is there
    assert sorted([*gik_ops.secret_files(s), "files_digest_salt"]) == sorted(p.name for p in secret_dir.iterdir())
    assert gik_ops.secret_files(s)["llamacpp_api_key"] == rendered["cases"][name]["llamacpp_key"]


def test_keyed_llamacpp_env_names_its_key_file(rendered: dict[str, Any]) -> None:
    """The keyed case's .env (Ansible's and pyinfra's, byte-identical above) hands llama.cpp its key file; a
    keyless case leaves compose's /dev/null."""
    custom = (rendered["cases"]["custom"]["dir"] / "compose" / ".env").read_text()
    key_dir = rendered["cases"]["custom"]["dir"] / "keys"
    assert f"LLAMACPP_API_KEY_FILE={key_dir}/llamacpp_api_key\n" in custom
    assert "LLAMACPP_API_KEY_FILE=" not in (rendered["cases"]["defaults"]["dir"] / "compose" / ".env").read_text()


def test_key_secret_name_is_the_compose_secret_hf_secret_writes() -> None:
    """The key file of each engine that takes a key: the compose secret its setting's variable names (not the
    default's basename: /dev/null for llama.cpp), and a file the hf_secret role writes under its folder."""
    from healthchecks import stack

    cat = stack.load()
    keyed = {e: kf for e, entry in cat.engines.items() if entry.deployed and (kf := entry.api_key_file_setting)}
    assert {"vllm", "llamacpp"} <= set(keyed)
    written = {Path(str(t["ansible.builtin.copy"]["dest"])).name
               for t in _walk(yaml.safe_load((ROOT / "roles" / "hf_secret" / "tasks" / "main.yml").read_text()))
               if isinstance(t.get("ansible.builtin.copy"), dict)}
    compose = yaml.safe_load((ROOT / "compose" / "compose.yaml").read_text())
    for e, kf in keyed.items():
        name = gik_ops.key_secret_name(kf)
        assert name == f"{e}_api_key" and name in written and name in gik_ops.secret_files(gs.load())
        assert compose["secrets"][name]["file"].startswith("${" + str(kf.env) + ":")


@pytest.mark.parametrize(("keyed", "refused"), [(True, False), (False, True)])
def test_pyinfra_exposure_keys_llamacpp(tmp_path: Path, keyed: bool, refused: bool) -> None:
    """pyinfra's exposure check (deploy.py, before any change): llama.cpp on 0.0.0.0 passes with a key from
    hf_secret_llamacpp_api_key_file, and without one is refused naming the settings that give it one; the key is
    in no message."""
    key = "sk-llama-" + secrets.token_hex(8)
    key_file = tmp_path / "llamacpp_key.txt"
    key_file.write_text(key + "\n" if keyed else "")
    s = gs.load({"inference_stack_engines": ["llamacpp"], "inference_stack_bind_address": "0.0.0.0",
                 "hf_secret_llamacpp_api_key_file": str(key_file)})
    out = gik_ops.exposure_refusals(s)
    if refused:
        assert len(out) == 1 and out[0].startswith("llamacpp would be published on 0.0.0.0 "
                                                   "(inference_stack_bind_address) without an API key: give it one "
                                                   "(hf_secret_llamacpp_api_key_file or vault_llamacpp_api_key)"), out
    else:
        assert out == [], out
    assert key not in " ".join(out)
    # the vault's value keys it as the file does (hf_secret's default: vault_llamacpp_api_key)
    by_vault = gs.load({"inference_stack_engines": ["llamacpp"], "inference_stack_bind_address": "0.0.0.0",
                        "vault_llamacpp_api_key": key if keyed else ""})
    assert bool(gik_ops.exposure_refusals(by_vault)) == refused


def test_settings_follow_the_layers(rendered: dict[str, Any]) -> None:
    s = _settings(rendered, "custom")
    assert s.engines == ["vllm", "llamacpp"] and s.gpu is False and s.port("vllm") == 18000
    assert s.services == ["vllm", "llamacpp"] and s.raw["inference_stack_overlay"] == "cpu"
    g = _settings(rendered, "gpu_strings")
    assert g.engines == ["ollama", "vllm"] and g.gpu is True and g.port("ollama") == 9434
    assert g.services == ["ollama", "vllm", "ollama-models"]
    assert g.compose_files == yaml.safe_load((ROOT / "roles/inference_stack/vars/main.yml").read_text())[
        "inference_stack_compose_files"]


@pytest.mark.parametrize(("override", "needle"), [
    ({"inference_stack_engines": ["vllm", "tgi"]}, "inference_stack_engines"),
    ({"inference_stack_engines": []}, "inference_stack_engines"),
    ({"inference_stack_vllm_port": "eighty"}, "inference_stack_vllm_port"),
    ({"inference_stack_llamacpp_port": 70000}, "inference_stack_llamacpp_port"),
    ({"inference_stack_llamacpp_port": 8000, "inference_stack_vllm_port": 8000}, "port clash"),
    ({"docker_install_from": "snap"}, "docker_install_from"),
    ({"inference_stack_gpu": "maybe"}, "inference_stack_gpu"),
    ({"inference_stack_vllm_gpu_memory_utilization": 1.5}, "inference_stack_vllm_gpu_memory_utilization"),
    ({"inference_stack_vllm_dtype": "int3"}, "inference_stack_vllm_dtype"),
    ({"hf_secret_token_file": "/nonexistent/token"}, "hf_secret_token_file"),
])
def test_bad_settings_name_the_setting(override: dict[str, Any], needle: str) -> None:
    with pytest.raises(gs.SettingsError) as e:
        gs.load(override)
    assert needle in str(e.value)


def test_settings_file_and_workstation_layers(tmp_path: Path) -> None:
    f = tmp_path / "settings.yml"
    f.write_text("inference_stack_vllm_port: 18001\ninference_stack_gpu: false\n")
    s = gs.load({"inference_stack_llamacpp_port": "18081"}, settings_file=f,
                workstation={"inference_stack_gpu": True, "inference_stack_models_dir": "/cache/models"})
    assert s.port("vllm") == 18001 and s.port("llamacpp") == 18081
    assert s.gpu is False  # the settings file wins over the workstation default
    assert s.value("inference_stack_models_dir") == "/cache/models"  # the lab's /srv/models is not the user's
    with pytest.raises(gs.SettingsError, match="gik_settings"):
        gs.load(settings_file=tmp_path / "missing.yml")


def test_inventory_py_reads_the_ansible_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"vars": {"inference_stack_vllm_port": 9000}, "children": {
        "other": {"hosts": {"db01": {}}},
        "gpu_hosts": {"vars": {"inference_stack_gpu": False}, "children": {"rack1": {"hosts": {
            "gpu01": {"ansible_host": "10.0.0.1", "ansible_user": "admin", "ansible_port": 2222,
                      "ansible_ssh_private_key_file": "~/.ssh/lab", "inference_stack_engines": ["vllm"],
                      "ansible_ssh_common_args": "-o StrictHostKeyChecking=no"},
            "ws": {"ansible_connection": "local"}}}}}}}}))
    (tmp_path / "group_vars" / "gpu_hosts").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "gpu01.yml").write_text("inference_stack_llamacpp_port: 9080\n")
    monkeypatch.setenv("GIK_INVENTORY", str(inv))
    hosts = dict(runpy.run_path(str(ROOT / "pyinfra" / "inventory.py"))["gpu_hosts"])
    assert set(hosts) == {"gpu01", "@local"}  # db01 is not in gpu_hosts
    g = hosts["gpu01"]
    assert (g["ssh_hostname"], g["ssh_user"], g["ssh_port"], g["ssh_key"]) == ("10.0.0.1", "admin", 2222, "~/.ssh/lab")
    assert g["_sudo"] is True and g["ssh_strict_host_key_checking"] == "no"
    assert g["inference_stack_engines"] == ["vllm"] and g["inference_stack_gpu"] is False
    assert g["inference_stack_vllm_port"] == 9000 and g["inference_stack_llamacpp_port"] == 9080
    assert g["gik_group_vars"] == str(tmp_path / "group_vars" / "gpu_hosts")
    assert "_sudo" not in hosts["@local"]


def test_inventory_py_reads_an_ini_inventory_as_ansible_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One inventory reader (issue 18): an INI inventory (Ansible reads both) is read by Ansible itself and gives
    the same hosts and data as its YAML conversion; an inventory without the group is one line, no traceback."""
    import runpy

    ini = tmp_path / "hosts.ini"
    ini.write_text("[gpu_hosts]\ngpu01 ansible_host=10.0.0.1 ansible_user=admin ansible_port=2222\n\n"
                   "[gpu_hosts:vars]\ninference_stack_engines=vllm,ollama\n")
    monkeypatch.setenv("GIK_INVENTORY", str(ini))
    from_ini = dict(runpy.run_path(str(ROOT / "pyinfra" / "inventory.py"))["gpu_hosts"])
    g = from_ini["gpu01"]
    assert (g["ssh_hostname"], g["ssh_user"], g["ssh_port"], g["_sudo"]) == ("10.0.0.1", "admin", 2222, True)
    assert gs.load(g).value("inference_stack_engines") == ["vllm", "ollama"]
    converted = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(ini), "--list", "--yaml", "--export"],
                               capture_output=True, text=True, check=True).stdout
    (tmp_path / "hosts.yml").write_text(converted)
    monkeypatch.setenv("GIK_INVENTORY", str(tmp_path / "hosts.yml"))
    assert dict(runpy.run_path(str(ROOT / "pyinfra" / "inventory.py"))["gpu_hosts"]) == from_ini

    ini.write_text("gpu01 ansible_host=10.0.0.1\n")  # no gpu_hosts group
    monkeypatch.setenv("GIK_INVENTORY", str(ini))
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "pyinfra" / "inventory.py"))
    msg = str(e.value.code)
    assert "\n" not in msg and str(ini) in msg and "no host in group gpu_hosts" in msg


def _vault_inventory(tmp_path: Path) -> dict[str, Any]:
    """The README's layout: group_vars/gpu_hosts/vault.yml encrypted with ansible-vault (and an inline !vault)."""
    token, key, inline = "hf_" + secrets.token_hex(12), "sk-" + secrets.token_hex(8), "pw-" + secrets.token_hex(6)
    gv = tmp_path / "group_vars" / "gpu_hosts"
    gv.mkdir(parents=True)
    (gv / "main.yml").write_text("inference_stack_gpu: false\n")
    (gv / "vault.yml").write_text(yaml.safe_dump({"vault_hf_token": token, "vault_vllm_api_key": key}))
    pw = tmp_path / "vault-pass"
    pw.write_text("correct horse\n")
    vault = str(BIN / "ansible-vault")
    subprocess.run([vault, "encrypt", "--vault-password-file", str(pw), str(gv / "vault.yml")], check=True,
                   capture_output=True)
    enc = subprocess.run([vault, "encrypt_string", "--vault-password-file", str(pw), inline, "--name",
                          "vault_registry_password"], check=True, capture_output=True, text=True).stdout
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "gpu01.yml").write_text(enc)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": {
        "gpu01": {"ansible_host": "10.0.0.1", "ansible_user": "admin"}}}}}}))
    wrong = tmp_path / "wrong-pass"
    wrong.write_text("battery staple\n")
    return {"token": token, "key": key, "inline": inline, "pw": pw, "wrong": wrong, "group_vars": gv,
            "inventory": tmp_path / "hosts.yml"}


def test_encrypted_vault_is_read_as_ansible_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19 item 6: the README's encrypted vault.yml gives the secrets (with ANSIBLE_VAULT_PASSWORD_FILE or
    --data gik_vault_password_file), inline !vault values included; no password or a wrong one is one line naming
    it, never a secret and never an empty token."""
    import runpy

    from healthchecks.endpoints.inventory import read_inventory
    from healthchecks.errors import ConfigError

    v = _vault_inventory(tmp_path)
    (h,) = read_inventory(v["inventory"], group="gpu_hosts", vault_password_file=v["pw"])
    assert (h.vars["vault_hf_token"], h.vars["vault_vllm_api_key"]) == (v["token"], v["key"])
    assert h.vars["vault_registry_password"] == v["inline"]
    for pw, needle in ((None, "no vault password was given"), (v["wrong"], "wrong vault password")):
        with pytest.raises(ConfigError) as e:
            read_inventory(v["inventory"], vault_password_file=pw)
        assert needle in str(e.value) and "\n" not in str(e.value)
        assert v["token"] not in str(e.value)

    # the settings layer: the vault's values become hf_secret's (files would win; none here)
    s = gs.load(group_vars=v["group_vars"], vault_password_file=str(v["pw"]))
    assert gik_ops.secret_files(s) == {"hf_token": v["token"], "vllm_api_key": v["key"], "llamacpp_api_key": ""}
    assert s.sources["secret:hf_token"] == "vault_hf_token"
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(v["pw"]))
    assert gik_ops.secret_files(gs.load(group_vars=v["group_vars"]))["hf_token"] == v["token"]
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE")
    with pytest.raises(gs.SettingsError) as se:
        gs.load(group_vars=v["group_vars"])
    assert "ANSIBLE_VAULT_PASSWORD_FILE" in str(se.value) and "gik_vault_password_file" in str(se.value)
    assert str(v["group_vars"]) in str(se.value)

    # pyinfra's inventory: the host through Ansible, the vault with Ansible's own variable
    monkeypatch.setenv("GIK_INVENTORY", str(v["inventory"]))
    with pytest.raises(SystemExit) as e2:
        runpy.run_path(str(ROOT / "pyinfra" / "inventory.py"))
    assert "no vault password" in str(e2.value.code) and v["token"] not in str(e2.value.code)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(v["pw"]))
    hosts = dict(runpy.run_path(str(ROOT / "pyinfra" / "inventory.py"))["gpu_hosts"])
    g = hosts["gpu01"]
    assert g["gik_group_vars"] == str(v["group_vars"]) and g["vault_registry_password"] == v["inline"]
    assert "vault_hf_token" not in g  # it comes in with its layer, group_vars, below a settings file
    assert gik_ops.secret_files(gs.load(g, group_vars=g["gik_group_vars"]))["hf_token"] == v["token"]


def test_apt_proxy_and_docker_sources_byte_identical(tmp_path: Path) -> None:
    """The proxy role's apt file (DIRECT for the no_proxy hosts) and the docker role's deb822 docker.sources, as
    pyinfra renders them from the roles' own tasks, are the bytes Ansible writes (one ansible-playbook run)."""
    settings = {"proxy_http": "http://lab:s3cret@proxy.lab:3128", "proxy_https": "http://proxy.lab:3128",
                "proxy_no_proxy": "localhost,127.0.0.1,mirror.lab.example:5000,.hub.lab,10.0.0.0/8,*.corp",
                "docker_repo_base": "http://mirror.lab.example/docker/linux/"}
    tasks = []
    for role, dest in (("proxy", gs.APT_PROXY_FILE), ("docker", "{{ docker_apt_sources }}")):
        task = next(copy.deepcopy(t) for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml"))
                    for t in _walk(yaml.safe_load(path.read_text()))
                    if isinstance(t.get("ansible.builtin.copy"), dict) and t["ansible.builtin.copy"]["dest"] == dest)
        task.pop("when", None)
        task.pop("register", None)
        task["ansible.builtin.copy"].update(dest=str(tmp_path / role), owner=None, group=None)
        tasks.append(task)
    (tmp_path / "settings.yml").write_text(yaml.safe_dump(settings))  # the lab's values over the roles' defaults
    play = [{"name": "render", "hosts": "localhost", "gather_facts": True, "gather_subset": ["!all", "min"],
             "vars_files": [*(str(ROOT / "roles" / r / f) for r in ("proxy", "docker") for f in
                              ("defaults/main.yml", "vars/main.yml")), str(tmp_path / "settings.yml")],
             "tasks": tasks}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                        "-e", f"ansible_python_interpreter={sys.executable}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    import platform

    # pyinfra's facts of this machine, mapped as the deploy maps them (LinuxDistribution's release_meta, Arch)
    meta = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    facts = gik_ops.ansible_facts({"release_meta": {k: v.strip('"') for k, v in meta.items()}}, platform.machine())
    s = gs.load(settings, facts=facts)
    apt_file = gs.render_apt_proxy(s)
    assert apt_file == (tmp_path / "proxy").read_text()
    assert 'Acquire::http::Proxy::mirror.lab.example "DIRECT";' in apt_file and "10.0.0.0" not in apt_file
    assert gs.render_docker_sources(s, facts) == (tmp_path / "docker").read_text()
    assert "URIs: http://mirror.lab.example/docker/linux/debian\n" in (tmp_path / "docker").read_text()
    assert gs.bool_filter(s.raw["proxy_has_credentials"]) is True


def test_infra_suite_reads_a_compose_env() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gik_infra_conftest", ROOT / "tests" / "infra" / "conftest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    env = mod.parse_env("# c\nA=1\nB='x y'\nC=\"q\"\nD=v # note\nexport E=5\n\nF=\n")
    assert env == {"A": "1", "B": "x y", "C": "q", "D": "v", "E": "5", "F": ""}
    assert {e: s["ansible_port"] for e, s in mod.ENGINES.items()} == {
        e: gs.DEPLOYED[e].ansible_port for e in gs.DEPLOYED}
    assert mod.as_bool("false", "x") is False and mod.as_bool("Yes", "x") is True
    assert mod.as_list("vllm, llamacpp") == ["vllm", "llamacpp"]


def test_host_probe_tells_root_from_a_user_without_sudo() -> None:
    """The deploy's first fact, run as pyinfra runs it (sh -c) without sudo: root, or a user who may not sudo
    (nobody) - what decides between going on, escalating and the one-line stop."""
    command = gik_ops.HostProbe().command()
    as_root = gik_ops.HostProbe().process(subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                                                         check=True).stdout.splitlines())
    assert as_root["priv"] == "root" and as_root["user"] == "root"
    nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", command],
                            capture_output=True, text=True, check=True, cwd="/")
    probe = gik_ops.HostProbe().process(nobody.stdout.splitlines())
    assert probe["priv"] == "none" and probe["user"] == "nobody", nobody.stdout


def test_registry_auth_fact_matches_the_login_it_would_do(tmp_path: Path) -> None:
    """registry_login skips `docker login` when root's Docker config holds the same credentials: the fact's hash
    of the stored auth (computed on the host, the credentials never travel back) equals the wanted one."""
    auth = base64.b64encode(b"lab:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"registry.lab:5000": {"auth": auth}}}))
    fact = gik_ops.RegistryAuth()

    def run(registry: str) -> str:
        out = subprocess.run(["sh", "-c", fact.command(registry)], capture_output=True, text=True, check=True,
                             env={**os.environ, "DOCKER_CONFIG": str(tmp_path)}).stdout
        return fact.process(out.splitlines())

    assert run("registry.lab:5000") == gik_ops.auth_digest("lab", "s3cret")
    assert run("registry.lab:5000") != gik_ops.auth_digest("lab", "new-password")  # a changed password logs in
    assert run("other.lab") == ""
    assert "s3cret" not in fact.command("registry.lab:5000") and auth not in fact.command("registry.lab:5000")
