"""healthchecks/gateway.py: the LiteLLM proxy config rendered from the catalogue (no copy of engines, ports or
models), for one host and for the lab; its settings checked by the catalogue; the CLI's bad input is one line.
LiteLLM itself reading these configs is tests/integration/test_gateway.py."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from healthchecks import gateway, stack

pytestmark = pytest.mark.unit
CAT = stack.load()
ROOT = Path(__file__).resolve().parents[2]


def _groups(cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in cfg["model_list"]:
        out.setdefault(d["model_name"], []).append(d)
    return out


def test_a_host_gateway_routes_each_engine_by_its_compose_service_and_catalogue_port() -> None:
    engines = CAT.deployed
    cfg = gateway.render(gateway.host_upstreams(engines, {engines[0]: "big-model"}))
    groups = _groups(cfg)
    for e in engines:
        entry = CAT.engines[e]
        model = "big-model" if e == engines[0] else entry.model_setting.default
        [direct] = groups[f"{model}@{e}"]
        assert direct["litellm_params"]["api_base"] == f"http://{e}:{entry.port}/v1"
        assert direct["litellm_params"]["model"] == f"openai/{model}"
        # probed by the gateway's background checks like the group's deployment: GET /health lists it
        assert "disable_background_health_check" not in direct["model_info"]
        assert any(d["model_info"]["id"] == e for d in groups[model])
    # the engines serving the catalogue's default name form one balanced group
    default = CAT.engines[engines[1]].model_setting.default
    assert sorted(d["model_info"]["id"] for d in groups[default]) == sorted(
        e for e in engines[1:] if CAT.engines[e].model_setting.default == default)


def test_keys_are_environment_references_never_values() -> None:
    cfg = gateway.render(gateway.host_upstreams(CAT.deployed))
    for d in cfg["model_list"]:
        key = d["litellm_params"]["api_key"]
        env = gateway.key_env(d["model_info"]["engine"])
        assert key == (f"os.environ/{env}" if env else gateway.NO_KEY)
    keyed = [e for e in CAT.engines.values() if e.api_key_file_setting]
    assert keyed, "the catalogue names at least one engine's key file"
    for e in keyed:  # VLLM_API_KEY_FILE -> the secret vllm_api_key -> VLLM_API_KEY, as the entrypoint exports it
        assert e.api_key_file_setting is not None and e.api_key_file_setting.env
        assert gateway.key_env(e.name) == e.api_key_file_setting.env.removesuffix("_FILE")
    assert cfg["general_settings"]["master_key"] == f"os.environ/{gateway.MASTER_KEY_ENV}"


def test_the_router_settings_come_from_the_options() -> None:
    opts = gateway.Options(num_retries=5, allowed_fails=3, cooldown_time=7, health_check_interval=11,
                           request_timeout=99, routing_strategy="least-busy")
    cfg = gateway.render(gateway.host_upstreams(CAT.deployed), opts)
    r = cfg["router_settings"]
    assert (r["num_retries"], r["allowed_fails"], r["cooldown_time"], r["timeout"], r["routing_strategy"]) == (
        5, 3, 7, 99, "least-busy")
    assert r["enable_health_check_routing"] is True and "fallbacks" not in r
    g = cfg["general_settings"]
    assert g["background_health_checks"] is True and g["health_check_interval"] == 11


PUBLISHED = {gateway.bind_setting(CAT.deployed[0]).ansible: "0.0.0.0"}  # the lab publishes its engines (with keys)


def test_a_lab_gateway_balances_one_model_across_hosts_by_address_and_published_port() -> None:
    e = CAT.deployed[0]
    port_name = CAT.engines[e].port_setting.ansible
    hosts: dict[str, dict[str, Any]] = {
        "gpu01": {"address": "10.0.0.11", "engines": [e], "settings": PUBLISHED},
        "gpu02": {"address": "fd00::12", "engines": [e], "ports": {e: 18000}, "settings": PUBLISHED},
        "gpu03": {"engines": [e], "models": {e: "other"}, "settings": PUBLISHED}}
    cfg = gateway.render(gateway.lab_upstreams(hosts))
    groups = _groups(cfg)
    default = CAT.engines[e].model_setting.default
    bases = {d["model_info"]["id"]: d["litellm_params"]["api_base"] for d in groups[default]}
    assert bases == {f"gpu01/{e}": f"http://10.0.0.11:{CAT.engines[e].port}/v1",
                     f"gpu02/{e}": "http://[fd00::12]:18000/v1"}
    assert [d["model_info"]["host"] for d in groups["other"]] == ["gpu03"]
    assert groups["other"][0]["litellm_params"]["api_base"] == f"http://gpu03:{CAT.engines[e].port}/v1"
    assert set(groups) >= {f"{default}@gpu01/{e}", f"{default}@gpu02/{e}", f"other@gpu03/{e}"}
    with pytest.raises(gateway.GatewayError, match=f"gpu04: {port_name}"):
        gateway.lab_upstreams({"gpu04": {"engines": [e], "ports": {e: 70000}, "settings": PUBLISHED}})


def test_a_lab_gateway_leaves_out_what_only_loopback_publishes_or_goes_through_the_hosts_gateway() -> None:
    """Engines on loopback (the kit's default; Ollama always) cannot be reached from the gateway host; a host
    running its own gateway is reached through it, every engine by its route MODEL@ENGINE, with the lab's key."""
    engines = CAT.deployed
    skipped: list[str] = []
    assert gateway.lab_upstreams({"gpu01": {"address": "10.0.0.11", "engines": engines}}, skipped=skipped) == []
    assert skipped == [f"gpu01/{e}" for e in engines]
    ups = gateway.lab_upstreams({"gpu01": {"address": "10.0.0.11", "engines": engines, "gateway_port": 4400,
                                           "settings": {"gateway_bind_address": "10.0.0.11"}}})
    assert [(u.api_base, u.sends, u.key_env) for u in ups] == [
        ("http://10.0.0.11:4400/v1", f"{CAT.engines[e].model_setting.default}@{e}", gateway.MASTER_KEY_ENV)
        for e in engines]
    cfg = gateway.render(ups)
    assert cfg["model_list"][0]["litellm_params"]["model"] == f"openai/{ups[0].sends}"
    assert cfg["model_list"][0]["model_name"] == ups[0].model
    # the same machine (a loopback address) reaches loopback-published engines
    assert len(gateway.lab_upstreams({"here": {"address": "127.0.0.1", "engines": engines}})) == len(engines)


def test_a_lab_gateway_in_its_container_refuses_a_loopback_host_and_reaches_its_own_host_by_service_name() -> None:
    """The role's gateway runs in its compose project's network, where 127.0.0.1 is the container: another host
    listed at a loopback address (an SSH tunnel as ansible_host) stops the render naming gateway_upstream_address;
    the gateway's own host (local) is reached by service name, loopback-published engines included."""
    e = CAT.deployed[0]
    with pytest.raises(gateway.GatewayError, match=r"gpu01: address 127\.0\.0\.1 is loopback.*"
                                                   r"gateway_upstream_address for gpu01"):
        gateway.lab_upstreams({"gpu01": {"address": "127.0.0.1", "engines": [e], "settings": PUBLISHED}},
                              loopback_reachable=False)
    [up] = gateway.lab_upstreams({"gw": {"address": "127.0.0.1", "engines": [e], "local": True,
                                         "gateway_port": 4400}}, loopback_reachable=False)
    assert (up.api_base, up.host, up.sends, up.key_env) == (
        f"http://{e}:{CAT.engines[e].port}/v1", "gw", None, gateway.key_env(e))
    ups = gateway.lab_upstreams({"gpu01": {"address": "10.0.0.11", "engines": [e], "settings": PUBLISHED},
                                 "gpu02": {"address": "10.0.0.12", "engines": [e], "settings": PUBLISHED}},
                                loopback_reachable=False)
    assert [u.api_base for u in ups] == [f"http://10.0.0.1{i}:{CAT.engines[e].port}/v1" for i in (1, 2)]


def test_the_config_follows_the_catalogue_not_a_copy() -> None:
    doc = yaml.safe_load(stack.PATH.read_text())
    changed = copy.deepcopy(doc)
    e = next(iter(changed["engines"]))
    changed["engines"][e]["port"] = 12345
    cat = stack.parse(changed)
    [up] = gateway.host_upstreams([e], catalogue=cat)
    assert up.api_base == f"http://{e}:12345/v1"


def test_hugging_face_is_every_groups_last_fallback_only_when_the_lab_allows_it() -> None:
    ups = gateway.lab_upstreams({"a": {"engines": CAT.deployed[:1], "settings": PUBLISHED},
                                 "b": {"engines": CAT.deployed[:1], "models": {CAT.deployed[0]: "m2"},
                                       "settings": PUBLISHED}})
    opts = gateway.Options(hf_fallback_model="HuggingFaceTB/SmolLM3-3B", hf_router_url="http://127.0.0.1:9/v1/")
    cfg = gateway.render(ups, opts)
    route = gateway.hf_route("HuggingFaceTB/SmolLM3-3B")
    [hf] = _groups(cfg)[route]
    assert hf["litellm_params"] == {"model": "openai/HuggingFaceTB/SmolLM3-3B", "api_base": "http://127.0.0.1:9/v1",
                                    "api_key": f"os.environ/{gateway.HF_TOKEN_ENV}"}
    groups = [u.model for u in ups]
    assert cfg["router_settings"]["fallbacks"] == [{g: [route]} for g in groups]
    assert "fallbacks" not in gateway.render(ups)["router_settings"]


@pytest.mark.parametrize(("values", "words"), [
    ({"gateway_num_retries": "many"}, "gateway_num_retries"),
    ({"gateway_cooldown_time": -1}, "gateway_cooldown_time"),
    ({"gateway_routing_strategy": "round-robin"}, "gateway_routing_strategy"),
    ({"gateway_health_check_interval": 0}, "gateway_health_check_interval"),
])
def test_a_bad_setting_is_named(values: dict[str, Any], words: str) -> None:
    with pytest.raises(gateway.GatewayError, match=words):
        gateway.Options.from_settings(values)


def test_settings_by_ansible_or_env_name_convert_as_the_catalogue_says() -> None:
    assert gateway.Options.from_settings({"gateway_num_retries": "4"}).num_retries == 4
    opts = gateway.Options.from_settings({"GATEWAY_ALLOWED_FAILS": "0", "GATEWAY_HF_FALLBACK_MODEL": "x/y"},
                                         source="env")
    assert (opts.allowed_fails, opts.hf_fallback_model) == (0, "x/y")
    assert gateway.Options.from_settings({}) == gateway.Options()  # the catalogue's defaults are the dataclass's


@pytest.mark.parametrize(("ups", "words"), [
    ([], "no engine"),
    ([gateway.Upstream("vllm", "m", "http://a/v1")] * 2, "listed twice"),
])
def test_bad_upstreams_are_refused(ups: list[gateway.Upstream], words: str) -> None:
    with pytest.raises(gateway.GatewayError, match=words):
        gateway.render(ups)


def test_unknown_engine_and_empty_model_are_refused() -> None:
    with pytest.raises(gateway.GatewayError, match="not an engine"):
        gateway.host_upstreams(["nope"])
    with pytest.raises(gateway.GatewayError, match="not an engine"):  # the gateway is no upstream of itself
        gateway.host_upstreams([gateway.__name__.rsplit(".", 1)[-1]])
    e = CAT.deployed[0]
    with pytest.raises(gateway.GatewayError, match="no model name"):
        gateway.host_upstreams([e], {e: "  "})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healthchecks.gateway", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_cli_renders_from_a_compose_env(tmp_path: Path) -> None:
    e = CAT.deployed[0]
    model_env = CAT.engines[e].model_setting.env
    env = tmp_path / ".env"
    env.write_text(f"{model_env}=my-model\nGATEWAY_NUM_RETRIES=3\n")
    out = tmp_path / "gateway" / "config.yaml"
    r = _cli("--env", str(env), "--engines", e, "-o", str(out))
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(out.read_text())
    assert [d["model_name"] for d in cfg["model_list"]] == ["my-model", f"my-model@{e}"]
    assert cfg["router_settings"]["num_retries"] == 3


@pytest.mark.parametrize(("env", "args", "words"), [
    ("GATEWAY_NUM_RETRIES=lots\n", [], "GATEWAY_NUM_RETRIES"),
    ("GATEWAY_ROUTING_STRATEGY=random\n", [], "GATEWAY_ROUTING_STRATEGY"),
    ("", ["--engines", "nope"], "nope"),
    ("", ["--lab", "/nonexistent.json"], "--lab"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, env: str, args: list[str], words: str) -> None:
    f = tmp_path / ".env"
    f.write_text(env)
    r = _cli("--env", str(f), *args)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
