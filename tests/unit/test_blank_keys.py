"""A key that is empty or whitespace-only is NO key, for every reader (issue 21's "whitespace-only vLLM key"):

- the compose entrypoints (compose/compose.yaml, as `docker compose config` renders them, run by /bin/sh with the
  engine replaced by a recorder): vLLM exported "  " as VLLM_API_KEY (vLLM takes any non-empty value as its key:
  vllm/entrypoints/serve/middleware/register.py), llama-server read a line of spaces or "key " from its
  --api-key-file as a key (llama.cpp common/arg.cpp: every non-empty line not starting with "#"), and the gateway
  exported a blank master key, which passed its own "empty" check;
- compose-preflight on real .env files, and the one rule it and the Ansible settings check share
  (healthchecks/exposure.py): a llama.cpp key file of comments only is no key (llama.cpp skips "#" lines);
- the roles: hf_secret writes a key without the whitespace around it (a blank vault value is an empty file), verify
  reads no key file for a blank or comment-only value, and the first play refuses the engine exposed without one.

tests/e2e/test_blank_key_entrypoint.py runs the real llama.cpp image with a whitespace-only and a padded key file."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_exposure import KEY, _project, _refused, preflight_run

from healthchecks import exposure
from healthchecks.protocols import read_api_key

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BLANKS = ["", " ", "\n", "\r\n", "  \n\n", " \t\r\n\x0b\x0c"]  # the ASCII whitespace set: POSIX [[:space:]]


# -- the one rule -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["vllm", "llamacpp"])
@pytest.mark.parametrize("blank", BLANKS)
def test_empty_or_whitespace_only_is_no_key(engine: str, blank: str) -> None:
    assert exposure.file_keys(engine, blank) == [] and exposure.file_keys(engine, blank.encode()) == []
    assert not exposure.holds_key(engine, blank)
    assert exposure.key_text(blank) == ""
    assert not exposure.holds_key(engine, None) and exposure.key_text(None) == ""


@pytest.mark.parametrize(("engine", "data", "keys"), [
    ("vllm", "sk-a\n", ["sk-a"]), ("vllm", " \tsk-a \r\n\n", ["sk-a"]), ("vllm", "\n\nsk-a", ["sk-a"]),
    ("vllm", "#sk-a", ["#sk-a"]),  # vLLM has no comments: VLLM_API_KEY is the key
    ("llamacpp", "sk-a\r\nsk-b \n\n", ["sk-a", "sk-b"]), ("llamacpp", "# lab key\n  #rotated\n\n", []),
    ("llamacpp", "# lab key\nsk-a\n", ["sk-a"]),
])
def test_what_each_engine_takes_from_its_key_file(engine: str, data: str, keys: list[str]) -> None:
    assert exposure.file_keys(engine, data) == keys
    assert exposure.holds_key(engine, data) is bool(keys)


def test_key_text_strips_the_ascii_whitespace_around_a_key_only() -> None:
    assert exposure.key_text(" sk-a\r\n") == "sk-a" and exposure.key_text("sk-a\nsk-b\n") == "sk-a\nsk-b"
    assert exposure.key_text(12345) == "12345"


# -- healthcheck's --api-key-file (what verify hands it) --------------------------------------------------------------
def test_healthcheck_reads_a_key_file_by_the_same_whitespace(tmp_path: Path) -> None:
    from healthchecks.errors import ConfigError
    from healthchecks.protocols import KEY_WHITESPACE, read_api_key

    assert KEY_WHITESPACE.encode() == exposure._WHITESPACE
    f = tmp_path / "key"
    f.write_text(f"\x0b {KEY}\t\r\n\x0c")
    assert read_api_key(str(f)) == KEY
    for blank in BLANKS:
        f.write_text(blank)
        with pytest.raises(ConfigError, match="is empty"):
            read_api_key(str(f))
    f.write_text(f"\xa0{KEY}\n")  # U+00A0 is no ASCII whitespace: the engine would keep it, so it is refused
    with pytest.raises(ConfigError, match="does not hold one key"):
        read_api_key(str(f))


# -- the compose entrypoints, as compose renders them --------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not shutil.which("docker"):
        pytest.skip("docker (compose v2) is not installed")
    tmp = tmp_path_factory.mktemp("blank-compose")
    empty = tmp / "empty"
    empty.touch(mode=0o600)
    env = {**os.environ, "HF_TOKEN_FILE": str(empty), "VLLM_API_KEY_FILE": str(empty),
           "LLAMACPP_API_KEY_FILE": str(empty), "GATEWAY_MASTER_KEY_FILE": str(empty), "COMPOSE_PROFILES": "gateway"}
    r = subprocess.run(["docker", "compose", "--project-directory", str(ROOT / "compose"), "-f",
                        str(ROOT / "compose" / "compose.yaml"), "config", "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    services: dict[str, Any] = json.loads(r.stdout)["services"]
    return services


def _script(services: dict[str, Any], name: str) -> list[str]:
    """The service's entrypoint as the container runs it: compose's ``$$`` is one ``$``."""
    ep = services[name]["entrypoint"]
    assert ep[:2] == ["/bin/sh", "-c"], ep
    return [e.replace("$$", "$") for e in ep]


def _recorder(tmp: Path, name: str, body: str) -> Path:
    f = tmp / name
    f.write_text("#!/bin/sh\n" + body)
    f.chmod(0o755)
    return f


def _vllm(rendered: dict[str, Any], tmp: Path, content: str) -> str:
    """Run vLLM's entrypoint with ``content`` as the vllm_api_key secret; what `vllm serve` got as VLLM_API_KEY."""
    secret = tmp / "vllm_api_key"
    secret.write_text(content)
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    _recorder(bin_dir, "vllm", 'if [ "${VLLM_API_KEY+set}" = set ]; then printf "key=[%s]" "$VLLM_API_KEY"; '
                               'else printf unset; fi\n')
    sh, c, script, *rest = _script(rendered, "vllm")
    r = subprocess.run([sh, c, script.replace("/run/secrets/vllm_api_key", str(secret)), *rest, "--model", "m"],
                       capture_output=True, text=True, timeout=30,
                       env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("blank", BLANKS)
def test_vllm_entrypoint_takes_a_blank_key_file_as_no_key(rendered: dict[str, Any], tmp_path: Path,
                                                          blank: str) -> None:
    assert _vllm(rendered, tmp_path, blank) == "unset"


@pytest.mark.parametrize("content", ["sk-vllm\n", " sk-vllm \r\n", "\n\tsk-vllm\n\n"])
def test_vllm_entrypoint_strips_the_whitespace_around_its_key(rendered: dict[str, Any], tmp_path: Path,
                                                              content: str) -> None:
    assert _vllm(rendered, tmp_path, content) == "key=[sk-vllm]"


def _llamacpp(rendered: dict[str, Any], tmp: Path, content: str) -> tuple[list[str], str]:
    """Run llama.cpp's entrypoint with ``content`` as the key file; the keys llama-server would read from the file
    its --api-key-file names (every non-empty line not starting with "#", as common/arg.cpp reads it) and argv."""
    secret = tmp / "llamacpp_api_key"
    secret.write_text(content)
    shm = tmp / "shm"
    shm.mkdir()
    server = _recorder(tmp, "llama-server",
                       'printf "%s\\n" "$*" >"$0.argv"\n'
                       'while [ $# -gt 0 ]; do [ "$1" = --api-key-file ] && cat "$2"; shift; done\n')
    sh, c, script, *rest = _script(rendered, "llamacpp")
    argv = rendered["llamacpp"]["command"]
    assert argv[argv.index("--api-key-file") + 1] == "/run/secrets/llamacpp_api_key"
    argv = [str(secret) if a == "/run/secrets/llamacpp_api_key" else a for a in argv]
    r = subprocess.run([sh, c, script.replace("/app/llama-server", str(server)), *rest, *argv],
                       capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(shm)})
    assert r.returncode == 0, r.stderr
    keys = [ln for ln in r.stdout.split("\n") if ln and not ln.startswith("#")]
    copies = list(shm.iterdir())  # the copy llama-server reads: private to root
    assert len(copies) == 1 and stat.S_IMODE(copies[0].stat().st_mode) == 0o600
    return keys, (tmp / "llama-server.argv").read_text()


@pytest.mark.parametrize("blank", BLANKS)
def test_llamacpp_entrypoint_takes_a_blank_key_file_as_no_key(rendered: dict[str, Any], tmp_path: Path,
                                                              blank: str) -> None:
    keys, argv = _llamacpp(rendered, tmp_path, blank)
    assert keys == []
    # every other argument reaches llama-server as compose gave it
    assert argv.startswith("-m /models/") and "--host 0.0.0.0 --port 8080" in argv and "--metrics" in argv


def test_llamacpp_entrypoint_strips_each_key_and_keeps_comments_for_llamacpp(rendered: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    keys, _ = _llamacpp(rendered, tmp_path, "# lab keys\r\n sk-one \r\n\n\tsk-two\n   \n")
    assert keys == ["sk-one", "sk-two"] == exposure.file_keys("llamacpp", "# lab keys\r\n sk-one \r\n\n\tsk-two\n")


def _gateway(rendered: dict[str, Any], tmp: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess[str]:
    run = tmp / "secrets"
    run.mkdir()
    for name, content in secrets.items():
        (run / name).write_text(content)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    _recorder(bin_dir, "litellm", 'printf "master=[%s] vllm=[%s]" "$GATEWAY_MASTER_KEY" "$VLLM_API_KEY"\n')
    sh, c, script, *rest = _script(rendered, "gateway")
    return subprocess.run([sh, c, script.replace("/run/secrets", str(run)), *rest], capture_output=True, text=True,
                          timeout=30, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


@pytest.mark.parametrize("blank", BLANKS)
def test_the_gateway_entrypoint_stops_on_a_blank_master_key(rendered: dict[str, Any], tmp_path: Path,
                                                            blank: str) -> None:
    r = _gateway(rendered, tmp_path, {"gateway_master_key": blank, "vllm_api_key": ""})
    assert r.returncode == 1 and "gateway_master_key secret (GATEWAY_MASTER_KEY_FILE) is empty" in r.stderr, r
    assert "master=" not in r.stdout


def test_the_gateway_entrypoint_strips_keys_and_takes_a_blank_engine_key_as_none(rendered: dict[str, Any],
                                                                                 tmp_path: Path) -> None:
    r = _gateway(rendered, tmp_path, {"gateway_master_key": " sk-master\r\n", "vllm_api_key": " \t\n"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "master=[sk-master] vllm=[none]"


# why a key does not let vLLM be published (healthchecks/stack.yml api_key_open_routes)
VLLM_GAP = "vLLM's API key does not guard every route (/invocations answers without it)"

# -- compose-preflight: the console script on real .env files ----------------------------------------------------
@pytest.mark.parametrize(("engine", "setting", "content"), [
    ("vllm", "VLLM_API_KEY_FILE", " \t\r\n\x0b\x0c"), ("vllm", "VLLM_API_KEY_FILE", "\r\n\r\n"),
    ("llamacpp", "LLAMACPP_API_KEY_FILE", "\t\n"),
    ("llamacpp", "LLAMACPP_API_KEY_FILE", "# the lab's key goes here\n\n"),  # llama.cpp skips "#" lines
])
def test_compose_preflight_refuses_an_exposed_engine_whose_key_file_is_blank(tmp_path: Path, engine: str,
                                                                             setting: str, content: str) -> None:
    d = _project(tmp_path, ["BIND_ADDRESS=0.0.0.0", f"{setting}=./secrets/blank"])
    (d / "secrets" / "blank").write_text(content)
    (d / "secrets" / "blank").chmod(0o600)
    r = preflight_run(d, engine)
    assert r.returncode == 1, r.stderr
    if engine == "vllm":  # refused beyond loopback keyed or not: its key leaves /invocations open (stack.yml)
        line = (f"compose-preflight: {engine} would be published on 0.0.0.0 (BIND_ADDRESS): {VLLM_GAP}: publish it "
                "on 127.0.0.1 (the gateway is the way in from the network), or set ALLOW_UNAUTHENTICATED=1 to accept "
                "an engine anyone on the network can use")
    else:
        line = (f"compose-preflight: {engine} would be published on 0.0.0.0 (BIND_ADDRESS) without an API key: give "
                f"it one ({setting}), publish it on 127.0.0.1, or set ALLOW_UNAUTHENTICATED=1 to accept an engine "
                "anyone on the network can use")
    assert _refused(r) == [line], r.stderr
    (d / "secrets" / "blank").write_text(f"{content}  {KEY} \r\n")  # the same file with a key: llama.cpp passes
    ok = preflight_run(d, engine)
    if engine == "vllm":
        assert ok.returncode == 1 and _refused(ok) == [line], ok.stderr
    else:
        assert ok.returncode == 0 and KEY not in ok.stdout + ok.stderr, ok.stderr


def test_the_ansible_settings_check_takes_a_blank_or_comment_only_key_as_none() -> None:
    opts = ["hf_secret_vllm_api_key", "hf_secret_llamacpp_api_key"]
    host = {"inference_stack_bind_address": "0.0.0.0", "inference_stack_engines": ["vllm", "llamacpp"],
            "vault_vllm_api_key": "\t\r\n", "vault_llamacpp_api_key": "# none yet\n"}
    out = exposure.ansible_refusals(host, opts, False)
    assert [line.split(" ", 1)[0] for line in out] == ["vllm", "llamacpp"], out
    assert VLLM_GAP in out[0] and "give it one (vault_llamacpp_api_key)" in out[1]
    host |= {"vault_vllm_api_key": f" {KEY}\n", "vault_llamacpp_api_key": f"# lab\n{KEY}\n"}
    assert exposure.ansible_refusals(host, opts, False) == out[:1]  # keyed: vLLM's key still leaves /invocations
    assert exposure.ansible_refusals({**host, "vault_vllm_api_key": " "}, opts, True) == []  # the lab opted out


# -- the roles: hf_secret writes, verify reads, the first play refuses -------------------------------------------
HOSTS: dict[str, dict[str, Any]] = {
    "blank": {"vault_vllm_api_key": " \t\r\n", "vault_llamacpp_api_key": "\n\n"},
    "comments": {"vault_vllm_api_key": "", "vault_llamacpp_api_key": "# the lab's key goes here\n"},
    "padded": {"vault_vllm_api_key": f"  {KEY}\r\n", "vault_llamacpp_api_key": f"\t{KEY}-l \n"},
    # a commented llama.cpp key: the file holds the key alone (verify and the gateway send what the engine reads)
    "commented": {"vault_vllm_api_key": "", "vault_llamacpp_api_key": f"# the lab's key\n  {KEY}-c \n"},
}


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("blank-roles")
    kit = tmp / "kit"
    shutil.copytree(ROOT / "roles", kit / "roles")
    for d in ("healthchecks", "compose"):
        (kit / d).symlink_to(ROOT / d)
    out_expr = "{{ gik_out }}"
    extra = {
        "verify": [{"name": "Keyed engines", "ansible.builtin.copy": {
            "content": "{{ verify_keyed_engines | to_json }}", "dest": out_expr + "/keyed.json", "mode": "0644"}}],
        "preflight": [{"name": "Exposure", "ansible.builtin.copy": {
            "content": "{{ hostvars[inventory_hostname] | gik_exposure_refusals(preflight_all_options, "
                       "preflight_allow_unauthenticated | bool) | to_json }}",
            "dest": out_expr + "/exposure.json", "mode": "0644"}}],
    }
    for role, tasks in extra.items():
        (kit / "roles" / role / "tasks" / "gik_blank.yml").write_text(yaml.safe_dump(tasks))
    hosts = {}
    for name, values in HOSTS.items():
        (tmp / name).mkdir()
        hosts[name] = {**values, "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "gik_out": str(tmp / name), "inference_stack_dir": str(tmp / name / "opt"),
                       "hf_secret_dir": str(tmp / name / "secrets"), "inference_stack_bind_address": "0.0.0.0",
                       "inference_stack_engines": ["vllm", "llamacpp"], "vault_hf_token": ""}
    inv = tmp / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts}}}}))
    play = [{"name": "engine hosts", "hosts": "gpu_hosts", "gather_facts": False, "tasks": [
        {"ansible.builtin.import_role": {"name": "preflight", "tasks_from": "gik_blank"}},
        {"ansible.builtin.import_role": {"name": "hf_secret"}},
        {"ansible.builtin.import_role": {"name": "verify", "tasks_from": "gik_blank"}}]}]
    (tmp / "blank.yml").write_text(yaml.safe_dump(play))
    argv = [str(BIN / "ansible-playbook"), "-i", str(inv), str(tmp / "blank.yml")]
    environ = {**os.environ, "ANSIBLE_ROLES_PATH": str(kit / "roles"), "ANSIBLE_FORCE_COLOR": "0"}
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environ)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environ)
    assert again.returncode == 0, again.stdout[-4000:]
    return {"tmp": tmp, "out": r.stdout + r.stderr, "again": again.stdout}


def test_hf_secret_writes_a_key_without_its_whitespace_and_a_blank_one_as_an_empty_file(roles: dict[str, Any]
                                                                                         ) -> None:
    files = {name: {f: (roles["tmp"] / name / "secrets" / f).read_text() for f in ("vllm_api_key", "llamacpp_api_key")}
             for name in HOSTS}
    assert files["blank"] == {"vllm_api_key": "", "llamacpp_api_key": ""}
    assert files["comments"] == {"vllm_api_key": "", "llamacpp_api_key": ""}  # comments only: no key
    assert files["commented"] == {"vllm_api_key": "", "llamacpp_api_key": f"{KEY}-c"}
    assert files["padded"] == {"vllm_api_key": KEY, "llamacpp_api_key": f"{KEY}-l"}
    for name in HOSTS:
        assert stat.S_IMODE((roles["tmp"] / name / "secrets" / "vllm_api_key").stat().st_mode) == 0o400


def test_verify_reads_no_key_file_for_a_blank_or_comment_only_key(roles: dict[str, Any]) -> None:
    keyed = {name: [k["engine"] for k in json.loads((roles["tmp"] / name / "keyed.json").read_text())]
             for name in HOSTS}
    assert keyed == {"blank": [], "comments": [], "padded": ["vllm", "llamacpp"], "commented": ["llamacpp"]}
    # the file verify hands healthcheck holds one key, which healthcheck reads (before: the comment line came too)
    assert read_api_key(str(roles["tmp"] / "commented" / "secrets" / "llamacpp_api_key")) == f"{KEY}-c"


def test_the_first_play_refuses_each_engine_exposed_with_a_blank_key(roles: dict[str, Any]) -> None:
    refused = {name: json.loads((roles["tmp"] / name / "exposure.json").read_text()) for name in HOSTS}
    assert len(refused["padded"]) == 1 and VLLM_GAP in refused["padded"][0]  # vLLM: a key is not enough
    for name in ("blank", "comments"):
        assert [line.split(" ", 1)[0] for line in refused[name]] == ["vllm", "llamacpp"], refused[name]
        assert refused[name][0] == refused["padded"][0], refused[name]
        assert "(inference_stack_bind_address) without an API key: give it one (vault_llamacpp_api_key)" \
            in refused[name][1], refused[name]


def test_no_key_is_printed_and_a_second_run_changes_nothing(roles: dict[str, Any]) -> None:
    assert KEY not in roles["out"] and KEY not in roles["again"]
    recaps = [line for line in roles["again"].splitlines() if " ok=" in line and "unreachable=" in line]
    assert len(recaps) == len(HOSTS) and all("changed=0 " in line for line in recaps), recaps
