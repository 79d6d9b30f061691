"""The engine catalogue is the one list of engines, ports and setting names: compose/, the Ansible roles,
the inventory example and the testinfra suite must agree with it, and no module outside ``engines/``
branches on an engine's name."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from healthchecks import preflight, stack
from healthchecks.endpoints.compose import from_compose, read_dotenv
from healthchecks.engines import CATALOGUE, DEPLOYED, ENGINES, NAMES

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
ROLES = ROOT / "roles"
IN_COMPOSE = [s for s in CATALOGUE.values() if s.compose_service]


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_every_engine_module_is_complete() -> None:
    assert NAMES[-1] == "openai", "the generic server must be detected last"
    for name, engine in ENGINES.items():
        assert engine.spec.name == name
        assert engine.default_api in engine.apis
        if engine.spec.deployed:
            s = engine.spec
            assert s.default_port and s.compose_service == name and s.env_port and s.env_model
            assert s.ansible_port == f"inference_stack_{name}_port" and s.ansible_model, name


@pytest.mark.parametrize("spec", IN_COMPOSE, ids=lambda s: s.name)
def test_compose_service_follows_catalogue(spec: Any) -> None:
    doc = _yaml(COMPOSE / "compose.yaml")
    svc = doc["services"][spec.compose_service]
    labels = svc["labels"]
    assert labels["io.gpu-inference-kit.engine"] == spec.name
    assert labels["io.gpu-inference-kit.port"] == str(spec.default_port)
    assert labels["io.gpu-inference-kit.model"].startswith(f"${{{spec.env_model}:-")
    assert any(str(p).endswith(f"${{{spec.env_port}:-{spec.default_port}}}:{spec.default_port}")
               for p in svc["ports"]), svc["ports"]


@pytest.mark.parametrize("spec", IN_COMPOSE, ids=lambda s: s.name)
def test_env_example_follows_catalogue(spec: Any) -> None:
    env = read_dotenv(COMPOSE / ".env.example")
    assert env[spec.env_port] == str(spec.default_port)
    assert spec.env_model in env
    if spec.env_model_path:
        assert env[spec.env_model_path].startswith("/models/")
    if spec.env_api_key_file:
        assert spec.env_api_key_file in env


def test_compose_discovery_finds_every_deployed_engine_at_its_port(tmp_path: Path) -> None:
    shutil.copy(COMPOSE / "compose.yaml", tmp_path)  # without a user's compose/.env beside it
    eps = {e.engine: e for e in from_compose(tmp_path / "compose.yaml", environ={})}
    for name in DEPLOYED:
        assert eps[name].port == CATALOGUE[name].default_port


def test_role_defaults_follow_catalogue() -> None:
    defaults = _yaml(ROLES / "inference_stack" / "defaults" / "main.yml")
    assert defaults["inference_stack_engines"] == list(DEPLOYED)
    template = (ROLES / "inference_stack" / "templates" / "env.j2").read_text()
    for name in DEPLOYED:
        s = CATALOGUE[name]
        assert defaults[s.ansible_port] == s.default_port, s.ansible_port
        assert s.ansible_model in defaults, s.ansible_model
        assert re.search(rf"^{s.env_port}={{{{ {s.ansible_port} }}}}$", template, re.M), s.env_port
        assert re.search(rf"^{s.env_model}={{{{ {s.ansible_model} }}}}$", template, re.M), s.env_model


def test_role_argument_specs_list_the_deployed_engines() -> None:
    found = 0
    for spec_file in ROLES.glob("*/meta/argument_specs.yml"):
        for entry in (_yaml(spec_file).get("argument_specs") or {}).values():
            opt = (entry.get("options") or {}).get("inference_stack_engines")
            if opt and "choices" in opt:
                found += 1
                assert sorted(opt["choices"]) == sorted(DEPLOYED), spec_file
    assert found >= 1


def test_no_port_default_map_in_roles_or_playbooks() -> None:
    """``inference_stack_<engine>_port | default(N)`` restated the catalogue's ports in the roles; they read
    the catalogue now (lookup of the setting with the catalogue's default)."""
    pattern = re.compile(r"inference_stack_\w+?_port\s*\|\s*default\(")
    offenders = [f"{p.relative_to(ROOT)}" for p in [*ROLES.rglob("*.yml"), *ROLES.rglob("*.j2"),
                                                    *(ROOT / "playbooks").rglob("*.yml"), ROOT / "site.yml"]
                 if pattern.search(p.read_text())]
    assert not offenders, offenders


def test_infra_suite_defaults_follow_catalogue() -> None:
    """The testinfra suite (standalone for users: the kit's checkout, PyYAML, no install) takes its engines, ports
    and defaults from the stack catalogue; it writes none of them itself."""
    import importlib.util

    path = ROOT / "tests" / "infra" / "conftest.py"
    mod_spec = importlib.util.spec_from_file_location("gik_infra_conftest", path)
    assert mod_spec and mod_spec.loader
    suite = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(suite)
    for name in DEPLOYED:
        assert suite.DEFAULTS[CATALOGUE[name].ansible_port] == CATALOGUE[name].default_port
        assert suite.ENGINES[name] == {"ansible_port": CATALOGUE[name].ansible_port,
                                       "env_port": CATALOGUE[name].env_port,
                                       "default_port": CATALOGUE[name].default_port}
    assert suite.DEFAULTS["inference_stack_engines"] == list(DEPLOYED)
    assert suite.as_bool("t", "x") is True and suite.as_bool("N", "x") is False
    text = path.read_text()
    assert not re.search(r"\b(8000|11434|8080)\b|\[\s*['\"]vllm", text), "the suite restates a port or engine list"


def test_compose_preflight_knows_every_compose_engine() -> None:
    assert {s.compose_service: (s.env_port, s.default_port) for s in IN_COMPOSE} == preflight.ENGINE_PORTS


ENGINE_LITERAL = re.compile(r"""(==|!=|\bin\b|\bnot in\b)\s*[(\[{{]?\s*["']({})["']""".format("|".join(NAMES)))


def test_no_engine_name_branch_outside_the_engine_modules() -> None:
    pkg = ROOT / "healthchecks"
    offenders = []
    for path in pkg.rglob("*.py"):
        if path.parent.name == "engines":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if ENGINE_LITERAL.search(line) or re.search(r"""engine\s*(==|!=)\s*["']""", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_an_engine_with_a_public_address_is_named_alone() -> None:
    from healthchecks.endpoints.url import parse_endpoint
    from healthchecks.errors import ConfigError

    ep = parse_endpoint("hf")
    assert ep.engine == "hf" and ep.url == "https://router.huggingface.co"  # the router's /v1 base
    assert parse_endpoint(" HF ").url == ep.url
    for name in DEPLOYED:  # engines without one still need a URL
        with pytest.raises(ConfigError, match="no scheme"):
            parse_endpoint(name)


# -- the stack catalogue (healthchecks/stack.yml): engines, ports and settings in one place -------------------------
CAT = stack.load()
TYPED = [s for s in CAT.settings.values() if s.type in ("int", "float", "bool")]


def test_engine_modules_agree_with_the_stack_catalogue() -> None:
    """The engine modules' Spec (what the CLIs read) and stack.yml (what the deployers read) say the same."""
    assert CAT.deployed == list(DEPLOYED)
    in_compose = {s.name for s in CATALOGUE.values() if s.compose_service}
    assert set(CAT.engines) == in_compose
    for name, e in CAT.engines.items():
        spec = CATALOGUE[name]
        assert (spec.default_port, spec.deployed, spec.compose_service) == (e.port, e.deployed, name), name
        assert (spec.env_port, spec.ansible_port) == (e.port_setting.env, e.port_setting.ansible), name
        assert (spec.env_model, spec.ansible_model) == (e.model_setting.env, e.model_setting.ansible), name
        assert spec.env_model_path == (e.model_path_setting.env if e.model_path_setting else None), name
        assert spec.env_api_key_file == (e.api_key_file_setting.env if e.api_key_file_setting else None), name
        assert e.port_setting.default == e.port, f"{name}: its port setting's default is its port"
    assert CAT.settings["engines"].default == CAT.deployed
    assert list(CAT.settings["engines"].choices or ()) == CAT.deployed


@pytest.mark.parametrize("role", sorted({s.role for s in CAT.settings.values() if s.role}))
def test_role_defaults_and_argument_specs_follow_the_stack_catalogue(role: str) -> None:
    defaults = _yaml(ROLES / role / "defaults" / "main.yml") or {}
    options = _yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    mine = {s.ansible: s for s in CAT.settings.values() if s.role == role and s.ansible}
    for name, s in mine.items():
        assert name in options, f"{role}: {name} is in stack.yml but not in meta/argument_specs.yml"
        assert options[name].get("type", "str") == s.type, name
        if s.choices is not None:
            assert list(options[name]["choices"]) == list(s.choices), name
        if s.default is None:  # no role default (e.g. per-engine GPU ids fall back to inference_stack_gpu_ids)
            assert name not in defaults, name
        elif s.derived:  # an expression of other settings; its value with their defaults is the catalogue's
            assert all(d in str(defaults[name]) for d in s.derived), name
        else:
            assert defaults[name] == s.default, f"{role}/defaults: {name}={defaults[name]!r}, stack.yml {s.default!r}"
    if role not in _PARTLY_CATALOGUED:  # every setting of a role the catalogue holds is catalogued
        missing = sorted(set(options) - set(mine))
        assert not missing, f"{role} settings missing from healthchecks/stack.yml: {missing}"
    for name, s in mine.items():  # a secret's spec hides it from Ansible's output; the catalogue's messages too
        assert bool(options[name].get("no_log", False)) == s.no_log, name


# Roles only some of whose settings are the stack's (the rest provision the host, not the stack), and why
_PARTLY_CATALOGUED = {
    "docker": "installs Docker on the host; its registry mirrors and logins are the connected lab's way to the "
              "engines' images (issue 19), the rest (packages, daemon.json, service) is the host's",
}


_COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")
# compose variables whose default differs between compose.yaml and an overlay: the overlay for the hardware owns
# the pinned image, and the catalogue's default for these is "" (= compose's pin)
_PER_OVERLAY = {"VLLM_IMAGE", "LLAMACPP_IMAGE", "OLLAMA_IMAGE", "SGLANG_IMAGE"}


def test_every_compose_variable_is_catalogued_with_its_default() -> None:
    env = CAT.by_env()
    defaults = CAT.env_defaults()
    seen = set()
    for path in sorted(COMPOSE.glob("compose*.yaml")):
        for var, default in _COMPOSE_VAR.findall(path.read_text()):
            seen.add(var)
            assert var in env, f"{path.name}: ${{{var}}} is not in healthchecks/stack.yml"
            if var not in _PER_OVERLAY:
                assert default == defaults.get(var, ""), f"{path.name}: ${{{var}:-{default}}}, stack.yml " \
                                                         f"{defaults.get(var)!r}"
    assert len(seen) >= 40


def test_env_example_follows_the_stack_catalogue() -> None:
    env = CAT.by_env()
    example = read_dotenv(COMPOSE / ".env.example")
    for var, value in example.items():
        assert var in env, f".env.example: {var} is not in healthchecks/stack.yml"
        s = env[var]
        want = s.env_text(s.default if var == "COMPOSE_FILE" else s.env_default)
        assert value == want, f".env.example: {var}={value}, stack.yml {want!r}"
        s.convert(value, name=var, source="env")  # and it passes its own check
    commented = set(re.findall(r"^#([A-Z][A-Z0-9_]+)=", (COMPOSE / ".env.example").read_text(), re.M))
    assert set(env) <= set(example) | commented | {"COMPOSE_PROJECT_NAME"}, set(env) - set(example) - commented
    # a required setting is written out: a copy of .env.example with its commented lines read as empty (as the
    # compose e2e tests start it) would otherwise stop compose-preflight ("set but empty")
    required_commented = sorted(v for v in commented if v in env and env[v].required)
    assert not required_commented, required_commented


# -- typed settings given as text (INI inventory, -e name=value, pyinfra --data, a compose .env) ---------------
def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.mark.parametrize("setting", TYPED, ids=lambda s: s.id)
def test_every_typed_setting_converts_from_text_or_names_itself(setting: stack.Setting) -> None:
    default = setting.default if setting.default is not None else setting.env_default
    name = setting.ansible or setting.env
    if setting.ansible:
        assert setting.convert(_text(default)) == default
        assert setting.convert(f" {_text(default)} ") == default  # INI values keep no quotes, -e may carry blanks
        assert type(setting.convert(_text(default))) is type(default)
    if setting.env:
        assert setting.convert(setting.env_text(setting.env_default), source="env") == setting.env_default
    for garbage in ("garbage", "1e999" if setting.type == "int" else "½", "[1]", "²"):
        with pytest.raises(stack.SettingError) as e:
            setting.convert(garbage, name=name)
        assert str(e.value).startswith(f"{name}=") and "\n" not in str(e.value), str(e.value)
    if setting.range and setting.range.high is not None:
        with pytest.raises(stack.SettingError, match=re.escape(f"{name}=")):
            setting.convert(str(setting.range.high * 2 + 1), name=name)
    if setting.range and setting.range.low is not None:
        with pytest.raises(stack.SettingError, match=re.escape(f"{name}=")):
            setting.convert(str(int(setting.range.low) - 1), name=name)


@pytest.mark.parametrize(("name", "text", "value"), [
    ("inference_stack_gpu", "no", False), ("inference_stack_gpu", "Y", True), ("inference_stack_gpu", "t", True),
    ("inference_stack_gpu", "off", False), ("inference_stack_engines", "vllm, llamacpp", ["vllm", "llamacpp"]),
    ("inference_stack_engines", '["ollama"]', ["ollama"]), ("inference_stack_gpu_ids", [0, 1], "0,1"),
    ("inference_stack_vllm_gpu_memory_utilization", "1", 1.0), ("inference_stack_vllm_port", "+8001", 8001),
    ("preflight_min_free_disk_gb", "1", 1),
])
def test_text_converts_as_ansible_reads_it(name: str, text: Any, value: Any) -> None:
    assert CAT.by_ansible()[name].convert(text) == value


@pytest.mark.parametrize(("name", "text", "words"), [
    ("inference_stack_vllm_gpu_memory_utilization", "0", "must be a fraction in (0, 1]"),
    ("inference_stack_vllm_gpu_memory_utilization", "nan", "must be a fraction in (0, 1]"),
    ("inference_stack_vllm_port", "65536", "is not a port number (1-65535)"),
    ("inference_stack_vllm_port", True, "not a boolean"),
    ("inference_stack_gpu", "maybe", "must be a boolean"),
    ("inference_stack_engines", "vllm,tgi", "'tgi' is not one of vllm, ollama, llamacpp"),
    ("inference_stack_engines", "", "must name at least 1"),
    ("inference_stack_vllm_dtype", "int3", "is not one of auto"),
    ("inference_stack_bind_address", "lab-host", "is not an IP address"),
    ("inference_stack_gpu_ids", "0;1", "must be 'all' or comma-separated GPU ids"),
    ("verify_num_prompts", "0", "must be a positive integer"),
    ("preflight_min_free_disk_gb", "-1", "must be a whole number of at least 0"),
])
def test_bad_text_stops_naming_the_setting(name: str, text: Any, words: str) -> None:
    with pytest.raises(stack.SettingError) as e:
        CAT.by_ansible()[name].convert(text)
    assert str(e.value).startswith(name) and words in str(e.value), str(e.value)


def test_a_list_of_mappings_converts_from_json_text_and_never_shows_a_secret() -> None:
    """docker_registry_logins (list of dict, no_log) and preflight_supported_os (dict) given as text: ``-e`` JSON
    or YAML is converted; a bad value is named without its text (it may hold a registry password)."""
    logins = CAT.by_ansible()["docker_registry_logins"]
    one = {"registry": "registry.lab:5000", "username": "ci", "password": "s3cret-pw"}
    assert logins.convert('[{"registry": "registry.lab:5000", "username": "ci", "password": "s3cret-pw"}]') == [one]
    assert logins.convert([one]) == [one] and logins.convert("") == [] and logins.convert("[]") == []
    for bad in ("registry.lab:5000,ci,s3cret-pw", '[{"password": "s3cret-pw"}, "s3cret-pw"]', "{password: s3cret-pw",
                ["s3cret-pw"]):
        with pytest.raises(stack.SettingError) as e:
            logins.convert(bad)
        assert str(e.value).startswith("docker_registry_logins must be a list of mappings"), str(e.value)
        assert "s3cret" not in str(e.value)
    supported = CAT.by_ansible()["preflight_supported_os"]
    assert supported.convert('{"Debian": ["12"]}') == {"Debian": ["12"]} == supported.convert("Debian: ['12']")
    with pytest.raises(stack.SettingError, match=r"^preflight_supported_os='Debian' must be a mapping"):
        supported.convert("Debian")
    mirrors = CAT.by_ansible()["docker_registry_mirrors"]
    assert mirrors.convert("https://a.lab, https://b.lab") == ["https://a.lab", "https://b.lab"]


def test_engines_ports_must_differ() -> None:
    _, errors = CAT.convert_all({"inference_stack_vllm_port": "8080"})
    assert errors == ["port clash: inference_stack_llamacpp_port=8080 is inference_stack_vllm_port's port too; "
                      "every engine needs its own port"]
    assert CAT.convert_all({"inference_stack_vllm_port": "8080", "inference_stack_engines": "vllm,ollama"})[1] == []


# -- the one verify command line ---------------------------------------------------------------------------------
def test_verify_commands_are_one_healthcheck_and_one_bench_with_every_report() -> None:
    cmds = stack.verify_commands(
        bin_dir="/kit/.venv/bin", address="10.0.0.5", engines=["vllm", "llamacpp"],
        ports={"vllm": 8001, "llamacpp": "8081"}, models={"vllm": "m1", "llamacpp": "m2"}, key_files={"vllm": "/tmp/k"},
        gpu=False, reports="/r/h", wait=900, request_timeout=60, smoke_bench=True, num_prompts=8, concurrency=4,
        output_len=32)
    eps = ["vllm=http://10.0.0.5:8001", "llamacpp=http://10.0.0.5:8081", "--model", "vllm=m1", "--model",
           "llamacpp=m2", "--api-key-file", "vllm=/tmp/k"]
    assert cmds["healthcheck"] == ["/kit/.venv/bin/healthcheck", *eps, "--wait", "900", "--timeout", "60",
                                   "--no-expect-gpu", "--json", "--no-diagnose"]
    assert cmds["smoke-bench"] == ["/kit/.venv/bin/smoke-bench", *eps, "--num-prompts", "8", "--concurrency", "4",
                                   "--output-len", "32", "--timeout", "60", "--json", "/r/h/bench.json",
                                   "--plot", "/r/h/bench.png", "--html", "/r/h/bench.html"]
    assert "smoke-bench" not in stack.verify_commands(
        bin_dir="b", address="::1", engines=["vllm"], ports={"vllm": 1}, models={"vllm": "m"}, key_files=None,
        gpu=True, reports="r", wait=1, request_timeout=1, smoke_bench=False, num_prompts=1, concurrency=1,
        output_len=1)


def test_both_deployers_run_the_one_verify_command() -> None:
    """roles/verify runs what its filter (stack.verify_commands) builds; pyinfra/deploy.py calls the same function
    and hands both command lines to gik_ops.verify. (tests/e2e/test_ansible.py compares the argv Ansible ran.)"""
    tasks = yaml.safe_load((ROLES / "verify" / "tasks" / "main.yml").read_text())
    argvs = [t["ansible.builtin.command"]["argv"] for block in tasks for t in block.get("block", [])
             if "ansible.builtin.command" in t]
    assert argvs == ["{{ verify_commands.healthcheck }}", "{{ verify_commands['smoke-bench'] }}"]
    assert "| gik_verify_commands }}" in (ROLES / "verify" / "vars" / "main.yml").read_text()
    plugin = (ROLES / "verify" / "filter_plugins" / "gik_stack.py").resolve()
    assert plugin == (ROLES / "preflight" / "filter_plugins" / "gik_stack.py").resolve()
    assert "stack.verify_commands(" in plugin.read_text()
    deploy = ast.parse((ROOT / "pyinfra" / "deploy.py").read_text())
    calls = [n for n in ast.walk(deploy) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name | ast.Attribute)
             and getattr(n.func, "id", getattr(n.func, "attr", "")) in ("verify_commands", "verify")]
    # the host's own verify, then the lab gateway's (site.yml's gateway_hosts play runs roles/verify the same way)
    assert [getattr(c.func, "id", getattr(c.func, "attr", "")) for c in calls] == ["verify_commands", "verify"] * 2
    text = (ROOT / "pyinfra" / "deploy.py").read_text()
    assert not [f for f in ('"--wait"', '"--json"', '"--model"', '"--num-prompts"') if f in text], "argv built twice"


CHECKED_ENV = [s for s in CAT.by_env().values() if s.type in ("int", "float", "bool") or s.format or s.choices]


@pytest.mark.parametrize("setting", CHECKED_ENV, ids=lambda s: s.env)
def test_compose_preflight_checks_every_catalogued_env_setting(setting: stack.Setting) -> None:
    """compose-preflight takes its checks from the catalogue: each typed .env setting, given garbage, is named once
    (it named 22 settings by hand; compose reads every one of these)."""
    assert setting.env
    assert preflight._check_values({setting.env: setting.env_text(setting.env_default)}) == []
    errors = preflight._check_values({setting.env: "garbage!"})
    assert len(errors) == 1 and errors[0].startswith(f"{setting.env}='garbage!'"), errors


# -- the whole repository: an engine's name, port and default model written in one place ------------------------
# Where they may appear besides the engine's module (healthchecks/engines/<name>.py) and the catalogue
# (healthchecks/stack.yml), and why. Anything else is a copy that drifts: read the catalogue instead.
SCANNED = ("roles", "pyinfra", "compose", "playbooks", "inventory", "healthchecks", "tests/infra", "site.yml")
ALLOWED: dict[tuple[str, str], str] = {
    ("compose/compose.yaml", "*"): "the one container definition: each engine's service, container port and default "
                                   "model (test_compose_service_follows_catalogue, test_every_compose_variable_...)",
    ("compose/.env.example", "port"): "documents compose's defaults for users (test_env_example_follows_...)",
    ("compose/.env.example", "model"): "documents compose's defaults for users (test_env_example_follows_...)",
    ("roles/inference_stack/defaults/main.yml", "*"): "Ansible reads role defaults there; test_role_defaults_and_"
                                                      "argument_specs_follow_the_stack_catalogue holds them equal",
    ("roles/inference_stack/meta/argument_specs.yml", "list"): "Ansible's choices are literal; held equal above",
    ("roles/preflight/meta/argument_specs.yml", "list"): "Ansible's choices are literal; held equal above",
    ("compose/images/vllm-cpu/Dockerfile", "port"): "the image's EXPOSE metadata (the service's container port)",
    ("compose/images/llamacpp/Dockerfile", "port"): "the image's EXPOSE metadata (the service's container port)",
    ("inventory/hosts.yml", "list"): "the example inventory's per-host choice of engines (a user's value)",
}
# Engine names in lists and branches: every engine's but one that is also a role's name (the gateway: roles/gateway,
# its compose profile and service, an HTML section of the lab report are all called so, and the deployers name
# them). Its port is scanned like every engine's; test_no_engine_name_branch_outside_the_engine_modules still holds
# the package to no branch on its name.
_N = "|".join(n for n in CAT.engines if not (ROLES / n).is_dir())
SCAN_RULES = {
    "port": re.compile(r"(?<![\w.:/-])(" + "|".join(str(e.port) for e in CAT.engines.values()) + r")(?![\w.])"),
    "list": re.compile(rf"""(?<![\w-])({_N})['"]?\s*,\s*['"]?({_N})(?![\w-])"""),
    "branch": re.compile(rf"""(==|!=|\bin\b|=)\s*[(\[]?\s*["']({_N})["']|["']({_N})["']\s*(==|!=|\bin\b)"""
                         rf"""|\[\s*"?\$\w+"?\s*=\s*({_N})\s*\]"""),
    "model": re.compile("|".join(re.escape(str(CAT.settings[e.model_path_setting.id].default).rsplit("/", 1)[-1])
                                 for e in CAT.engines.values() if e.model_path_setting)),
}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a file without comments (and, in Python, docstrings): prose may name an engine."""
    text = path.read_text(errors="replace")
    skip: set[int] = set()
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                skip.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        code = re.sub(r"(^|\s)#.*$", "", line)
        if n not in skip and code.strip():
            out.append((n, code))
    return out


def scan(root: Path) -> list[str]:
    files = [root / "site.yml"] if (root / "site.yml").is_file() else []
    for top in SCANNED:
        if (root / top).is_dir():
            files += [p for p in sorted((root / top).rglob("*")) if p.is_file() and "cache" not in str(p)
                      and (p.suffix in (".yml", ".yaml", ".j2", ".py", ".sh", ".example") or p.name == "Dockerfile")]
    found = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel == "healthchecks/stack.yml" or rel.startswith("healthchecks/engines/"):
            continue
        for n, line in _code_lines(path):
            for kind, rx in SCAN_RULES.items():
                if rx.search(line) and (rel, kind) not in ALLOWED and (rel, "*") not in ALLOWED:
                    found.append(f"{rel}:{n}: {kind}: {line.strip()[:100]}")
    return found


def test_engines_ports_and_models_are_written_in_one_place() -> None:
    offenders = scan(ROOT)
    assert not offenders, "restated outside the catalogue:\n" + "\n".join(offenders)
    for (rel, _), why in ALLOWED.items():
        assert (ROOT / rel).is_file() and why, rel  # no stale exception


@pytest.mark.parametrize(("file", "line"), [
    ("roles/verify/tasks/extra.yml", "    port: 8000"),
    ("pyinfra/extra.py", 'if engine == "vllm":\n    pass'),
    ("roles/preflight/vars/extra.yml", "x: \"{{ ['vllm', 'ollama'] }}\""),
    ("compose/extra.sh", '[ "$s" = ollama ] && echo x'),
    ("playbooks/extra.yml", "model: /models/smollm2-135m-instruct-hf"),
])
def test_the_scan_finds_a_planted_copy(tmp_path: Path, file: str, line: str) -> None:
    (tmp_path / file).parent.mkdir(parents=True)
    (tmp_path / file).write_text(line + "\n# a comment naming vllm, ollama on 8000 is prose\n")
    found = scan(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{file}:1:"), found


def test_one_ansible_boolean_reading() -> None:
    """The catalogue's bool conversion, the package's reader (endpoints.inventory.ansible_bool) and Ansible's own
    (convert_bool.boolean, which argument_specs type: bool uses) read every word alike."""
    from ansible.module_utils.parsing.convert_bool import boolean

    from healthchecks.endpoints import inventory
    from healthchecks.errors import ConfigError

    assert (stack.BOOL_TRUE, stack.BOOL_FALSE) == (inventory.BOOL_TRUE, inventory.BOOL_FALSE)
    setting = CAT.by_ansible()["inference_stack_gpu"]
    for word in [*stack.BOOL_TRUE, *stack.BOOL_FALSE, "Yes", " off ", "T", True, False, 0, 1, "maybe", "2", ""]:
        try:
            want: object = boolean(word.strip() if isinstance(word, str) else word, strict=True)
        except TypeError:
            want = "error"
        try:
            got: object = setting.convert(word)
        except stack.SettingError:
            got = "error"
        try:
            pkg: object = inventory.ansible_bool(word, "x")
        except ConfigError:
            pkg = "error"
        assert got == want == pkg, word


@pytest.mark.parametrize("engine", [e for e in CAT.engines.values() if e.model_check], ids=lambda e: e.name)
def test_an_engines_model_check_is_the_compose_service_it_waits_for(engine: stack.EngineEntry) -> None:
    """stack.yml engines.<name>.model_check: compose starts that service before the engine (depends_on, healthy once
    the model can be had) and it prints its verdict as "<service>: <cause>", the line the deployers report."""
    services = _yaml(COMPOSE / "compose.yaml")["services"]
    assert engine.model_check in services
    assert services[engine.name]["depends_on"][engine.model_check] == {"condition": "service_healthy"}
    script = "\n".join(map(str, services[engine.model_check]["entrypoint"]))
    assert f'"{engine.model_check}: " + msg' in script
