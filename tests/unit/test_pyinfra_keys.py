"""pyinfra's verify reads each keyed engine's key on the controller: the lab's key file, or, for a key given
through the vault alone (no file on the controller), a 0600 copy made for the run and removed at its end. Before,
verify was handed the text "None" as the key file of a vault-only key and healthcheck could not read it."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_ops  # noqa: E402
import gik_settings as gs  # noqa: E402

from healthchecks import stack  # noqa: E402

CAT = stack.load()
SECRETS = {"hf_token": "hf_x\n", "vllm_api_key": "sk-vault-only\n", "llamacpp_api_key": ""}


def test_a_vault_only_key_gets_a_private_controller_copy(tmp_path: Path) -> None:
    given_file = tmp_path / "llama_key"
    given_file.write_text("sk-file\n")
    out = gik_ops.verify_key_files(["vllm", "llamacpp"], CAT, {**SECRETS, "llamacpp_api_key": "sk-file\n"},
                                   {"vllm": None, "llamacpp": str(given_file)})
    assert out["llamacpp"] == str(given_file)  # the lab's own file
    copy = Path(out["vllm"])
    assert copy != Path("None") and copy.read_text() == "sk-vault-only\n"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    copy.unlink()


def test_an_engine_without_a_key_gets_none() -> None:
    assert gik_ops.verify_key_files(["vllm", "llamacpp"], CAT, {**SECRETS, "vllm_api_key": " \n"},
                                    {"vllm": None, "llamacpp": None}) == {}


def test_the_copy_is_gone_when_the_run_ends(tmp_path: Path) -> None:
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'pyinfra')!r}]\n"
            "import gik_ops\nfrom healthchecks import stack\n"
            "out = gik_ops.verify_key_files(['vllm'], stack.load(), {'vllm_api_key': 'sk-k'}, {'vllm': None})\n"
            "print(out['vllm'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.name.startswith("gik-vllm-key-") and not path.exists()


# -- a blank key is no key (healthchecks/exposure.py's one rule), in pyinfra as in the roles ---------------------------
KEY = "sk-blank" + secrets.token_hex(8)
HOSTS: dict[str, dict[str, Any]] = {
    "blank": {"vault_vllm_api_key": " \t\r\n", "vault_llamacpp_api_key": "\n\n"},
    "comments": {"vault_vllm_api_key": "", "vault_llamacpp_api_key": "# the lab's key goes here\n"},
    "padded": {"vault_vllm_api_key": f"  {KEY}\r\n", "vault_llamacpp_api_key": f"\t{KEY}-l \n"},
}
EXPOSED = {"inference_stack_bind_address": "0.0.0.0", "inference_stack_engines": ["vllm", "llamacpp"],
           "inference_stack_gpu": False, "vault_hf_token": ""}


@pytest.fixture(scope="module")
def hf_secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """roles/hf_secret (ansible-playbook -c local) for each of HOSTS: the key files Ansible writes."""
    tmp = tmp_path_factory.mktemp("pyinfra-blank")
    hosts = {name: {**values, "vault_hf_token": "", "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                    "inference_stack_dir": str(tmp / name / "opt"), "hf_secret_dir": str(tmp / name / "secrets")}
             for name, values in HOSTS.items()}
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts}}}}))
    (tmp / "play.yml").write_text(yaml.safe_dump([{"hosts": "gpu_hosts", "gather_facts": False, "tasks": [
        {"ansible.builtin.import_role": {"name": "hf_secret"}}]}]))
    r = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp / "hosts.yml"),
                        str(tmp / "play.yml")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_FORCE_COLOR": "0"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return tmp


def _settings(name: str) -> gs.Settings:
    return gs.load({**EXPOSED, **HOSTS[name]}, group_vars="/nonexistent")


@pytest.mark.parametrize("name", list(HOSTS))
def test_the_key_files_are_the_roles_bytes(hf_secret: Path, name: str) -> None:
    """What pyinfra writes for each key is what hf_secret writes (| gik_key_text): a blank key an empty file."""
    ours = gik_ops.secret_files(_settings(name))
    for fname in ("vllm_api_key", "llamacpp_api_key"):
        assert ours[fname] == (hf_secret / name / "secrets" / fname).read_text(), (name, fname)
    assert ours["vllm_api_key"] == ("" if name != "padded" else KEY)


@pytest.mark.parametrize("name", ["blank", "comments"])
def test_an_exposed_engine_with_a_blank_key_is_refused_naming_the_setting(name: str) -> None:
    refused = gik_ops.exposure_refusals(_settings(name))
    assert [line.split(" ", 1)[0] for line in refused] == ["vllm", "llamacpp"], refused
    # vLLM is refused beyond loopback keyed or not: its key leaves /invocations open (healthchecks/stack.yml)
    assert "vLLM's API key does not guard every route (/invocations answers without it)" in refused[0], refused[0]
    assert "give it one (hf_secret_llamacpp_api_key_file or vault_llamacpp_api_key)" in refused[1], refused[1]
    assert all(KEY not in line for line in refused)


def test_a_key_file_of_blanks_given_to_pyinfra_is_no_key(tmp_path: Path) -> None:
    blank, comments = tmp_path / "vllm.key", tmp_path / "llamacpp.key"
    blank.write_text("  \t\n")
    comments.write_text("# none yet\n\n")
    s = gs.load({**EXPOSED, "hf_secret_vllm_api_key_file": str(blank),
                 "hf_secret_llamacpp_api_key_file": str(comments)}, group_vars="/nonexistent")
    assert [line.split(" ", 1)[0] for line in gik_ops.exposure_refusals(s)] == ["vllm", "llamacpp"]
    contents = gik_ops.secret_files(s)
    given = {"vllm": str(blank), "llamacpp": str(comments)}
    assert gik_ops.verify_key_files(["vllm", "llamacpp"], CAT, contents, given) == {}  # verify sends no key


def test_a_padded_key_is_a_key() -> None:
    refused = gik_ops.exposure_refusals(_settings("padded"))  # llama.cpp's padded key is a key: not refused
    assert [line.split(" ", 1)[0] for line in refused] == ["vllm"], refused  # vLLM's key leaves /invocations open
    assert "does not guard every route" in refused[0] and KEY not in refused[0]
