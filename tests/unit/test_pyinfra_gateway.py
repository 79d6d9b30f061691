"""The pyinfra deployer's gateway and lab report (issue 21), the pure parts: the gateway's config.yaml and
gateway.env are the bytes roles/gateway writes (Ansible's side runs the role's own validate.yml and template, one
ansible-playbook run, one local host per case); a bad gateway setting stops naming it, no secret in the message;
host.json has the fields roles/verify writes; the lab report's command line is roles/verify's."""

from __future__ import annotations

import json
import os
import secrets
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

KEY = "sk-unit" + secrets.token_hex(8)
SALT = secrets.token_hex(32)  # the host's files_digest_salt (roles/inference_stack files_salt), as deploy.py reads it
CASES: dict[str, dict[str, Any]] = {
    # a llama.cpp-only host with the catalogue's gateway defaults (no engine key)
    "llamacpp": {"inference_stack_engines": ["llamacpp"]},
    # two engines, vLLM keyed, every router setting away from its default, the HF fallback, TLS files
    "custom": {
        "inference_stack_engines": ["vllm", "llamacpp"],
        "inference_stack_project_name": "gik-gw-custom",
        "inference_stack_vllm_served_model_name": "smol",
        "inference_stack_llamacpp_model_alias": "other",
        # padded as a `!vault |` block gives it: written trimmed (gik_key_text), as hf_secret writes it
        "vault_vllm_api_key": "  sk-vllm" + secrets.token_hex(6) + "\n",
        "vault_hf_token": " hf_unit" + secrets.token_hex(6) + "\n",  # the fallback's token (trimmed)
        "gateway_port": 14000,
        "gateway_bind_address": "0.0.0.0",
        "gateway_image": "local/litellm:1.110.2",
        "gateway_model": "smol",
        "gateway_num_retries": 5,
        "gateway_allowed_fails": 3,
        "gateway_cooldown_time": 7,
        "gateway_health_check_interval": 11,
        "gateway_request_timeout": 99,
        "gateway_routing_strategy": "least-busy",
        "gateway_hf_fallback_model": "HuggingFaceTB/SmolLM3-3B",
    },
}


@pytest.fixture(scope="module")
def ansible_side(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """roles/gateway's own validate.yml (its config through its filters) and gateway.env.j2, per case."""
    tmp = tmp_path_factory.mktemp("gwrender")
    _pair(tmp / "cert.pem", tmp / "key.pem")  # a real pair: validate.yml loads it as the server does
    hosts: dict[str, Any] = {}
    for name, values in CASES.items():
        out = tmp / name
        out.mkdir()
        extra = {"gateway_tls_cert_src": str(tmp / "cert.pem"), "gateway_tls_key_src": str(tmp / "key.pem")} \
            if name == "custom" else {}
        hosts[name] = {**values, **extra, "inference_stack_dir": str(out / "opt"), "vault_gateway_master_key": KEY,
                       "gik_out": str(out), "ansible_connection": "local",
                       "ansible_python_interpreter": sys.executable}
    inv = tmp / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": {"gpu_hosts": {"hosts": hosts}}}}))
    play = [{"name": "render", "hosts": "gpu_hosts", "gather_facts": False, "tasks": [
        {"ansible.builtin.import_role": {"name": "gateway", "tasks_from": "validate"}},
        {"ansible.builtin.copy": {"content": "{{ gateway_config }}", "dest": "{{ gik_out }}/config.yaml",
                                  "mode": "0644"}},
        {"ansible.builtin.template": {"src": str(gs.GATEWAY_ENV_TEMPLATE), "dest": "{{ gik_out }}/gateway.env",
                                      "mode": "0644"}},
        # the values the role's copy tasks write (engine keys, the fallback's token)
        {"ansible.builtin.copy": {"content": "{{ gateway_key_values | to_json }}",
                                  "dest": "{{ gik_out }}/key_values.json", "mode": "0600"}},
        {"ansible.builtin.copy": {"content": "{{ gateway_hf_token }}", "dest": "{{ gik_out }}/gateway_hf_token",
                                  "mode": "0600"}},
    ]}]
    (tmp / "render.yml").write_text(yaml.safe_dump(play))
    # the tasks after the role's run outside it, where role_path is not defined: its kit root given as an extra var
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(tmp / "render.yml"), "-e",
                        json.dumps({"gateway_kit_root": str(ROOT), "inference_stack_files_salt": SALT})], cwd=ROOT,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_FORCE_COLOR": "0"})
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return {"hosts": hosts}


def _pair(cert: Path, key: Path, *extra: str) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "2", "-subj", "/CN=gw.lab",
                    "-keyout", str(key), "-out", str(cert), *(extra or ("-nodes",))],
                   check=True, capture_output=True, timeout=120)


def _load(values: dict[str, Any], **kw: Any) -> gs.Settings:
    """Settings of the role defaults and ``values``, as the Ansible side's inventory has them: no group_vars layer
    (the kit's own inventory/group_vars/gpu_hosts is the lab example, gateway_enabled and 0.0.0.0 among others)."""
    return gs.load(values, group_vars="/nonexistent", **kw)


def _settings(values: dict[str, Any]) -> gs.Settings:
    return _load({k: v for k, v in values.items() if not k.startswith(("gik_out", "ansible_"))}, files_salt=SALT)


@pytest.mark.parametrize("name", list(CASES))
def test_gateway_files_are_the_roles_bytes(ansible_side: dict[str, Any], name: str) -> None:
    values = ansible_side["hosts"][name]
    out = Path(values["gik_out"])
    g = gs.gateway(_settings(values))
    assert g.config == (out / "config.yaml").read_text()
    assert g.env == (out / "gateway.env").read_text()
    assert g.secrets["gateway_master_key"] == KEY
    # the engine keys and the token: the role's bytes (keys trimmed as hf_secret writes them; the token only with
    # gateway_hf_fallback_model, in the gateway's own file)
    role_keys = json.loads((out / "key_values.json").read_text())
    assert {k: g.secrets[k + "_api_key"] for k in role_keys} == role_keys
    assert g.secrets["gateway_hf_token"] == (out / "gateway_hf_token").read_text()
    if name == "custom":
        assert g.secrets["vllm_api_key"] == values["vault_vllm_api_key"].strip() != values["vault_vllm_api_key"]
        assert g.secrets["gateway_hf_token"] == values["vault_hf_token"].strip() != ""
        assert set(g.tls) == {"gateway_tls_cert", "gateway_tls_key"}
        assert "least-busy" in g.config and "SmolLM3-3B@hf" in g.config
    else:
        # llama.cpp without a key: its key file is written empty (the entrypoint exports "none"), never /dev/null;
        # no fallback: no token on the gateway (its file empty)
        assert g.secrets == {"gateway_master_key": KEY, "llamacpp_api_key": "", "gateway_hf_token": ""}
        assert not g.tls
    assert KEY not in g.config + g.env  # keys are os.environ/ references and file paths, never values


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("gwpems")
    _pair(tmp / "a.crt", tmp / "a.key")
    _pair(tmp / "b.crt", tmp / "b.key")
    _pair(tmp / "enc.crt", tmp / "enc.key", "-passout", "pass:unit-pass")
    return {p.name: p for p in tmp.iterdir()}


@pytest.mark.parametrize(("cert", "key", "needle"), [
    ("a.crt", "b.key", "gateway_tls_cert_src and gateway_tls_key_src do not load"),  # the key of another cert
    ("enc.crt", "enc.key", "gateway_tls_key_src"),  # an encrypted key: the server cannot load it unattended
    ("a.crt", "a.crt", "gateway_tls_key_src"),  # no private key at all
])
def test_a_tls_pair_the_server_cannot_load_is_refused_before_any_change(
        pems: dict[str, Path], cert: str, key: str, needle: str) -> None:
    """roles/gateway validate.yml's check (its own filter), before any change; no file content in the message."""
    s = _load({"gateway_enabled": True, "vault_gateway_master_key": KEY, "gateway_tls_cert_src": str(pems[cert]),
                 "gateway_tls_key_src": str(pems[key])})
    with pytest.raises(gs.SettingsError) as e:
        gs.gateway(s)
    assert needle in str(e.value), str(e.value)
    assert "PRIVATE KEY" not in str(e.value) and KEY not in str(e.value)
    assert set(gs.gateway(_load({"vault_gateway_master_key": KEY, "gateway_tls_cert_src": str(pems["a.crt"]),
                                   "gateway_tls_key_src": str(pems["a.key"])})).tls) == {"gateway_tls_cert",
                                                                                         "gateway_tls_key"}


def test_gateway_enabled_follows_sites_when() -> None:
    assert not gs.gateway_enabled(_load({}))
    for value in (True, "yes", "true", 1):
        assert gs.gateway_enabled(_load({"gateway_enabled": value}))
    assert not gs.gateway_enabled(_load({"gateway_enabled": "no"}))


def test_master_key_from_a_controller_file_wins_over_the_vault(tmp_path: Path) -> None:
    f = tmp_path / "mk"
    f.write_text("sk-fromfile\n")
    s = _load({"vault_gateway_master_key": "sk-fromvault", "gateway_master_key_src": str(f)})
    assert gs.gateway(s).secrets["gateway_master_key"] == "sk-fromfile"


@pytest.mark.parametrize(("override", "needle"), [
    ({"gateway_routing_strategy": "fastest"}, "gateway_routing_strategy"),
    ({"gateway_num_retries": "-1"}, "gateway_num_retries"),
    ({"gateway_port": "eighty"}, "gateway_port"),
    ({"gateway_enabled": "maybe"}, "gateway_enabled"),
    ({"vault_gateway_master_key": ""}, "gateway_master_key"),
    ({"vault_gateway_master_key": "not-a-litellm-key-hunter2"}, "gateway_master_key"),
    ({"gateway_tls_cert_src": "/etc/hostname"}, "gateway_tls_cert_src and gateway_tls_key_src go together"),
    ({"gateway_tls_cert_src": "/nonexistent.pem", "gateway_tls_key_src": "/nonexistent.key"},
     "gateway_tls_cert_src (/nonexistent.pem) is not a file on the controller"),
    # validate.yml: a fallback without a token (blank counts as none) stops before any change
    ({"gateway_hf_fallback_model": "HuggingFaceTB/SmolLM3-3B"}, "gateway_hf_fallback_model (HuggingFaceTB/SmolLM3-3B)"
                                                                " is set but the Hugging Face token"),
    ({"gateway_hf_fallback_model": "HuggingFaceTB/SmolLM3-3B", "vault_hf_token": " \n\t"}, "is empty or blank"),
    ({"gateway_master_key_src": "/nonexistent/mk"}, "gateway_master_key_src: cannot read"),
    ({"inference_stack_engines": []}, "inference_stack_engines"),
])
def test_bad_gateway_settings_name_the_setting(override: dict[str, Any], needle: str) -> None:
    with pytest.raises(gs.SettingsError) as e:
        s = _load({"gateway_enabled": True, "vault_gateway_master_key": KEY, **override})
        gs.gateway_enabled(s)
        gs.gateway(s)
    assert needle in str(e.value), str(e.value)
    assert KEY not in str(e.value) and "hunter2" not in str(e.value)


def test_host_result_has_the_fields_roles_verify_writes() -> None:
    base = {"host": "gpu01", "engines": ["llamacpp"], "gpu": True, "driver_version": "580.95.05", "gpus": ["H100"],
            "reboot_pending": False}
    ok = gik_ops.host_result(base, healthcheck_rc=0, bench_rc=0, when="2026-12-05T00:00:00Z")
    spec = yaml.safe_load((ROOT / "roles" / "verify" / "vars" / "main.yml").read_text())["verify_host_result"]
    assert list(ok) == list(spec)  # the same fields, in roles/verify's order
    assert ok["verified"] and ok["why"] == "" and ok["failures"] == [] and ok["driver_version"] == "580.95.05"
    broken = gik_ops.host_result(base, healthcheck_rc=2, healthcheck_error="healthcheck: bad --endpoint\n")
    assert broken["why"] == "healthcheck exited 2: healthcheck: bad --endpoint" and broken["smoke_bench_rc"] is None
    bench = gik_ops.host_result(base, healthcheck_rc=0, bench_rc=1, bench_error="smoke-bench: all requests failed")
    assert bench["failures"] == ["smoke-bench exited 1: smoke-bench: all requests failed"]
    assert json.loads(json.dumps(bench)) == bench


def test_lab_report_argv_is_roles_verifys() -> None:
    argv = gik_ops.lab_report_argv("/kit/.venv/bin", "/kit/reports", ["local", "gpu01"],
                                   {"gpu01": "failed or unreachable earlier in this run"})
    assert argv == ["/kit/.venv/bin/lab-report", "/kit/reports", "--quiet", "--host=local", "--host=gpu01",
                    "--failed=gpu01=failed or unreachable earlier in this run"]
    assert gik_ops.report_name("@local") == "local" and gik_ops.report_name("gpu01") == "gpu01"


def test_gpu_rows_read_nvidia_smis_rows() -> None:
    assert gik_ops.gpu_rows({"gpus": "NVIDIA H100 80GB HBM3, 580.95.05;NVIDIA H100 80GB HBM3, 580.95.05;"}) == (
        "580.95.05", ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"])
    assert gik_ops.gpu_rows({}) == ("", [])


def test_compose_options_are_the_gateway_roles(tmp_path: Path) -> None:
    assert gik_ops.compose_options([".env", "gateway.env"], ["gateway"]) == \
        "--env-file .env --env-file gateway.env --profile gateway"
    assert gik_ops.compose_options() == "" and gik_ops.compose_options([".env"], compose="v1") == ""
    # compose v1 (roles/gateway since af69025): no --env-file (docker-compose 1.29 reads .env itself), gateway.env's
    # settings as environment, taken literally, as the role's gateway_env_vars reads them
    v1 = gik_ops.compose_options([".env", "gateway.env"], ["gateway"], "v1")
    assert "--env-file" not in v1 and "--profile" not in v1
    (tmp_path / "gateway.env").write_text("# a comment=no\nCOMPOSE_PROFILES=gateway\n\n"
                                          "HTTP_PROXY=http://u:p$w@proxy:3128 `x` &y\nNO_PROXY=a,b=c")
    r = subprocess.run(["sh", "-c", f"cd {tmp_path} && {{ {v1}true; }} && env"], capture_output=True, text=True)
    got = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    role = {"COMPOSE_PROFILES": "gateway", "HTTP_PROXY": "http://u:p$w@proxy:3128 `x` &y", "NO_PROXY": "a,b=c"}
    assert {k: got.get(k) for k in role} == role and "# a comment" not in got, r.stderr
