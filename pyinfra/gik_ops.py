"""pyinfra facts and operations for the kit's deploy: each compares the host's real state with the wanted one and
yields commands only where they differ, so a second run reports no change and ``--dry`` changes nothing.

- ``secret_file``: root-only file from a value, compared by SHA1, never shown (``--diff`` prints no secret)
- ``image_load``: ``docker load`` a shipped tarball only when the host's images differ from the tarball's
- ``compose_up``: ``up --pull <inference_stack_image_pull>`` only when a service's container is missing, stopped,
  built from another config (compose's config hash) or another image; stops when an image is missing and may not
  be pulled (never: air-gapped)
- ``registry_login``: ``docker login --password-stdin`` as root unless its Docker config holds the credentials
- ``verify``: ``healthcheck`` (and ``smoke-bench``) from the controller; no host change, fails the host when
  an endpoint is unhealthy
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.context import state
from pyinfra.facts.files import File, Sha1File
from pyinfra.operations.util import files as file_utils

from pyinfra import host

SECRET_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o400
SECRET_NAMES = ("hf_token", "vllm_api_key", "llamacpp_api_key")


def secret_files(settings: Any) -> dict[str, str]:
    """What hf_secret writes: the token as it is (``content: "{{ hf_secret_token }}"``), each engine key without the
    whitespace around it (``| gik_key_text``, healthchecks/exposure.py ``key_text``): a blank key is an empty file,
    no key to every reader."""
    from healthchecks import exposure

    raw = settings.raw
    return {"hf_token": _text(raw.get("hf_secret_token")),
            "vllm_api_key": exposure.key_text(raw.get("hf_secret_vllm_api_key")),
            "llamacpp_api_key": exposure.key_text(raw.get("hf_secret_llamacpp_api_key"), "llamacpp")}


def key_secret_name(setting: Any, compose: Mapping[str, Any] | None = None) -> str | None:
    """The secret file an engine's key file setting names: the kit compose file's top-level secret whose ``file``
    reads the setting's variable (LLAMACPP_API_KEY_FILE -> llamacpp_api_key), which hf_secret writes under its
    folder; roles/verify derives the same name. Not the setting's default's basename: /dev/null for llama.cpp."""
    from healthchecks import exposure

    env = getattr(setting, "env", None)
    doc = exposure.kit_compose() if compose is None else compose
    for name, spec in (doc.get("secrets") or {}).items():
        if env and isinstance(spec, dict) and str(spec.get("file", "")).startswith("${" + env + ":"):
            return str(name)
    return None


def key_secret_names(engines: list[str], catalogue: Any) -> dict[str, str]:
    """Each of ``engines`` that takes a key -> the secret file hf_secret writes it to (``key_secret_name``)."""
    return {e: name for e in engines if (kf := catalogue.engines[e].api_key_file_setting)
            and (name := key_secret_name(kf))}


def verify_key_files(engines: list[str], catalogue: Any, secret_contents: Mapping[str, str],
                     given: Mapping[str, Any]) -> dict[str, str]:
    """The key file verify reads on the controller for each keyed engine (its secret holds a key by the one rule,
    healthchecks/exposure.py ``holds_key``: not empty, not whitespace only, for llama.cpp not comments only): the
    lab's own ``hf_secret_<engine>_api_key_file``, or, for a key given through the vault alone, a 0600 copy made for
    this run and removed when the process ends (the host's copy is root-only)."""
    from healthchecks import exposure

    out: dict[str, str] = {}
    for e, name in key_secret_names(engines, catalogue).items():
        content = secret_contents.get(name, "")
        if not exposure.holds_key(e, content):
            continue
        if given.get(e):
            out[e] = str(given[e])
            continue
        out[e] = private_copy(e, content)
    return out


def private_copy(name: str, content: str) -> str:
    """A 0600 file on the controller holding ``content`` (a key verify reads), removed when the process ends."""
    fd, path = tempfile.mkstemp(prefix=f"gik-{name}-key-")  # mode 0600
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    atexit.register(_remove, path)
    return path


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


def exposure_refusals(settings: Any, secret_contents: Mapping[str, str] | None = None) -> list[str]:
    """healthchecks/exposure's rule for this deploy: each engine of ``settings`` published beyond loopback must have
    a key in the secret file hf_secret writes for it (``secret_files``; ``exposure.holds_key``: empty, whitespace-only
    or, for llama.cpp, comment-only is no key), else one line naming the settings that give it one
    (hf_secret_<engine>_api_key_file or vault_<engine>_api_key)."""
    from healthchecks import exposure, stack

    contents = secret_files(settings) if secret_contents is None else secret_contents
    catalogue = stack.load()
    key_file_names = key_secret_names(settings.engines, catalogue)
    key_names = {e: f"hf_secret_{e}_api_key_file or vault_{e}_api_key" for e, name in key_file_names.items()
                 if name in contents}
    keyed = {e: exposure.holds_key(e, contents[key_file_names[e]]) for e in key_names}
    values = {**settings.raw, **{k: x for k, x in settings.validated.items() if x is not None}}
    return exposure.deployer_refusals(values, keyed=keyed, key_names=key_names, catalogue=catalogue)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _fail(message: str) -> StringCommand:
    """A command that fails with ``message`` on stderr: how an operation reports a problem found at run time
    (pyinfra shows it as the host's error, with no traceback)."""
    return StringCommand("echo", shlex.quote(message), ">&2;", "exit", "1")


_DISTRIBUTIONS = {"debian": "Debian", "ubuntu": "Ubuntu", "rhel": "RedHat", "rocky": "Rocky", "centos": "CentOS",
                  "almalinux": "AlmaLinux", "fedora": "Fedora"}


def ansible_facts(distro: Mapping[str, Any], arch: str | None) -> dict[str, Any]:
    """The ``ansible_facts`` the roles' vars read, from pyinfra's facts (distribution, release, family, arch)."""
    meta = distro.get("release_meta") or {}
    dist = _DISTRIBUTIONS.get(str(meta.get("ID", "")).lower(), str(distro.get("name") or ""))
    return {"distribution": dist, "distribution_release": meta.get("VERSION_CODENAME", ""),
            "distribution_major_version": str(distro.get("major") or ""),
            "distribution_version": str(meta.get("VERSION_ID", "")),
            "os_family": "Debian" if dist in ("Debian", "Ubuntu") else "RedHat", "architecture": arch or ""}


# -- facts ------------------------------------------------------------------------------------------------------
class HostProbe(FactBase[dict[str, str]]):
    """who runs it (root, may sudo without a password, or neither) / docker / compose / NVIDIA driver (and its GPUs:
    ``gpus=NAME, VERSION;...``) / runtime / init system, in one round trip."""

    def command(self) -> str:
        return r"""
echo "user=$(id -un)"
if [ "$(id -u)" = 0 ]; then echo priv=root
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then echo priv=sudo; else echo priv=none; fi
d=$(command -v docker || true); echo "docker=$d"
if [ -n "$d" ] && docker compose version >/dev/null 2>&1; then echo compose=v2
elif command -v docker-compose >/dev/null 2>&1; then echo compose=v1; else echo compose=none; fi
if command -v nvidia-smi >/dev/null 2>&1; then
  if nvidia-smi -L >/dev/null 2>&1; then echo nvidia_smi=ok
    echo "gpus=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | tr '\n' ';')"
  else echo nvidia_smi=fails; fi
else echo nvidia_smi=absent; fi
if command -v nvidia-container-runtime >/dev/null 2>&1; then echo nvidia_runtime=yes; else echo nvidia_runtime=no; fi
if [ -d /run/systemd/system ]; then echo init=systemd; else echo init=other; fi
if [ -n "$d" ]; then echo "runtimes=$(docker info --format '{{json .Runtimes}}' 2>/dev/null | tr -d '\n')"; fi
true"""

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split("=", 1) for line in output if "=" in line)


class FilesSalt(FactBase[str]):
    """The host's salt of the secret files' digests (roles/inference_stack's ``<secrets>/files_digest_salt``, read as
    root; "" where there is none yet). A salt, not a key: it keeps the digests in the world-readable .env from being
    looked up in a dictionary."""

    def command(self, path: str) -> str:
        return f"cat {shlex.quote(path)} 2>/dev/null; true"

    @staticmethod
    def default() -> str:
        return ""

    def process(self, output: list[str]) -> str:
        return "\n".join(output).strip()


def files_salt(present: str | None) -> str:
    """The salt to use: the host's, else a new one (64 hex digits, as the role draws it: lookup password
    hexdigits)."""
    import secrets

    return present if present else secrets.token_hex(32)


class AptSourcesFor(FactBase[list[str]]):
    """apt source files (``*.list``, ``*.sources``) with an active line naming ``uri`` (the docker role's find)."""

    def command(self, uri: str) -> str:
        pattern = shlex.quote(r"^\s*[^#[:space:]].*" + re.escape(uri.rstrip("/")) + r"/?(\s|$)")
        return (f"for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do "
                f"[ -f \"$f\" ] && grep -qE {pattern} \"$f\" && echo \"$f\"; done; true")

    @staticmethod
    def default() -> list[str]:
        return []  # no source names it (no output)

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


class RegistryAuth(FactBase[str]):
    """SHA-256 of root's stored ``auth`` for ``registry`` in Docker's config.json ("" when none): compared with
    the wanted credentials' hash, so the credentials never travel back nor appear in a command line."""

    def command(self, registry: str) -> str:
        script = ("import hashlib, json, os, sys\n"
                  "d = os.environ.get('DOCKER_CONFIG') or os.path.expanduser('~/.docker')\n"
                  "p = os.path.join(d, 'config.json')\n"
                  "try:\n    a = json.load(open(p)).get('auths', {}).get(sys.argv[1], {}).get('auth', '')\n"
                  "except (OSError, ValueError, AttributeError):\n    a = ''\n"
                  "print(hashlib.sha256(a.encode()).hexdigest() if a else '-')\n")
        return f"python3 -c {shlex.quote(script)} {shlex.quote(registry)} 2>/dev/null || echo -"

    def process(self, output: list[str]) -> str:
        return output[0].strip() if output and output[0].strip() != "-" else ""


class ImageIds(FactBase[dict[str, str]]):
    """Image ID per reference on the host ("" when absent)."""

    def command(self, refs: list[str]) -> str:
        q = " ".join(shlex.quote(r) for r in refs)
        return f"for r in {q}; do echo \"$r $(docker image inspect -f '{{{{.Id}}}}' \"$r\" 2>/dev/null)\"; done"

    def process(self, output: list[str]) -> dict[str, str]:
        out = {}
        for line in output:
            ref, _, image_id = line.partition(" ")
            out[ref] = image_id.strip()
        return out


class StackState(FactBase[dict[str, dict[str, str]]]):
    """Per compose service: compose's config hash and image for the rendered project, the image's ID on the host,
    and the project's container (state, image ID, config-hash label). {"": {...}} when there is no project yet."""

    def command(self, directory: str, project: str, services: list[str], options: str = "",
                options_v1: str = "", rendered: str = ".env") -> str:
        d, p, r = shlex.quote(directory), shlex.quote(project), shlex.quote(rendered)
        svc = " ".join(shlex.quote(s) for s in services)
        return rf"""
cd {d} 2>/dev/null && [ -f {r} ] || {{ echo "- absent"; exit 0; }}
if docker compose version >/dev/null 2>&1; then C="docker compose {options}"
elif command -v docker-compose >/dev/null 2>&1; then {options_v1} C="docker-compose"
else echo "- nocompose"; exit 0; fi
for s in {svc}; do
  h=$($C -p {p} config --hash "$s" 2>/dev/null | awk '{{print $2}}')
  img=$($C -p {p} config --images "$s" 2>/dev/null | head -n1)
  want=""; [ -n "$img" ] && want=$(docker image inspect -f '{{{{.Id}}}}' "$img" 2>/dev/null)
  cid=$(docker ps -aq --filter label=com.docker.compose.project={p} \
        --filter "label=com.docker.compose.service=$s" | head -n1)
  have="absent - -"
  [ -n "$cid" ] && have=$(docker inspect -f \
    '{{{{.State.Status}}}} {{{{.Image}}}} {{{{index .Config.Labels "com.docker.compose.config-hash"}}}}' "$cid")
  echo "$s ${{h:--}} ${{img:--}} ${{want:--}} $have"
done"""

    def process(self, output: list[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for line in output:
            parts = line.split()
            if len(parts) == 2 and parts[0] == "-":
                return {"": {"status": parts[1]}}
            if len(parts) >= 7:
                s, h, img, want, status, image_id, label = parts[:7]
                out[s] = {"hash": h, "image": img, "image_id": want, "status": status, "container_image": image_id,
                          "container_hash": label}
        return out


# -- operations -------------------------------------------------------------------------------------------------
@operation()
def secret_file(dest: str, content: str, mode: int = SECRET_FILE_MODE, user: str = "root", group: str = "root"):
    """Write ``content`` to ``dest`` (root-only). Compared by SHA1; the value is never logged or diffed."""
    remote = host.get_fact(File, path=dest)
    want = hashlib.sha1(content.encode()).hexdigest()
    if not remote or host.get_fact(Sha1File, path=dest) != want:
        yield FileUploadCommand(StringIO(content), dest, remote_temp_filename=host.get_temp_filename(dest))
        yield file_utils.chown(dest, user, group)
        yield file_utils.chmod(dest, f"{mode:o}")
        return
    if remote.get("user") != user or remote.get("group") != group:
        yield file_utils.chown(dest, user, group)
    if remote.get("mode") != int(f"{mode:o}"):
        yield file_utils.chmod(dest, f"{mode:o}")


@operation()
def fetch(url: str, dest: str, mode: int = 0o644):
    """Download ``url`` to ``dest`` on the host when ``dest`` is missing (as get_url does): curl, wget or python3,
    whichever the host has (a minimal server may have none of the first two)."""
    if host.get_fact(File, path=dest):
        return
    u, d = shlex.quote(url), shlex.quote(dest)
    py = shlex.quote(f"import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen({url!r}).read())")
    yield StringCommand(f"(if command -v curl >/dev/null; then curl -fsSL {u} -o {d}.part; "
                        f"elif command -v wget >/dev/null; then wget -q {u} -O {d}.part; "
                        f"else python3 -c {py} > {d}.part; fi) && chmod {mode:o} {d}.part && mv {d}.part {d}")


def auth_digest(username: str, password: str) -> str:
    """What RegistryAuth reports for these credentials: SHA-256 of Docker's config.json ``auth`` (base64 user:pass)."""
    return hashlib.sha256(base64.b64encode(f"{username}:{password}".encode())).hexdigest()


@operation()
def registry_login(registry: str, username: str, password: str):
    """``docker login`` to ``registry`` as root, unless root's Docker config already holds these credentials (the
    docker role's ``docker_login`` with ``reauthorize: false``). The password reaches ``docker login`` on stdin from
    a root-only file that is removed at once: never in a command line, an output or a diff; config.json is 0600."""
    if host.get_fact(RegistryAuth, registry=registry) == auth_digest(username, password):
        return
    tmp = f"/root/.docker/.gik-login-{hashlib.sha256(registry.encode()).hexdigest()[:12]}"
    yield StringCommand("mkdir", "-p", "-m", "700", "/root/.docker")
    yield FileUploadCommand(StringIO(password), tmp, remote_temp_filename=host.get_temp_filename(tmp))
    yield StringCommand(f"chmod 600 {tmp}; HOME=/root docker login --username {shlex.quote(username)} "
                        f"--password-stdin {shlex.quote(registry)} < {tmp} >/dev/null; rc=$?; rm -f {tmp}; "
                        "chmod 600 /root/.docker/config.json 2>/dev/null; exit $rc")


def tarball_images(path: str | Path) -> dict[str, str]:
    """Tag -> image ID of a ``docker save`` tarball (manifest.json; classic and OCI layouts)."""
    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            manifest = json.load(member) if member else []
    except (OSError, tarfile.TarError, KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a `docker save` tarball ({e})") from None
    out: dict[str, str] = {}
    for entry in manifest:
        image_id = "sha256:" + Path(entry["Config"]).name.removesuffix(".json")
        for tag in entry.get("RepoTags") or []:
            out[tag] = image_id
    if not out:
        raise ValueError(f"{path} holds no tagged image (save it with `docker save -o FILE IMAGE:TAG`)")
    return out


@operation()
def image_load(dest: str, images: dict[str, str]):
    """``docker load -i dest`` when any of the tarball's tags is absent or another image on the host."""
    have = host.get_fact(ImageIds, refs=sorted(images))
    if any(have.get(tag) != image_id for tag, image_id in images.items()):
        yield StringCommand("docker", "load", "-i", shlex.quote(dest))


def compose_options(env_files: list[str] | None = None, profiles: list[str] | None = None,
                    compose: str = "v2") -> str:
    """compose's global options for ``env_files`` (in order: later files win) and ``profiles``. Compose v1
    (docker-compose 1.29 reads one env file, and ``--env-file`` replaces the project folder's .env) gets none: as
    roles/gateway's v1 command it reads .env itself and every other env file's settings as environment, which
    outranks .env (``v1_environment``: shell that exports them, run before the command in the same shell); no
    ``--profile`` either (gateway.env's COMPOSE_PROFILES)."""
    files_ = list(env_files or [])
    if compose == "v1":
        return v1_environment(files_)
    return " ".join([*(f"--env-file {shlex.quote(f)}" for f in files_),
                     *(f"--profile {shlex.quote(p)}" for p in profiles or [])])


def v1_environment(env_files: list[str]) -> str:
    """Shell exporting the settings of ``env_files`` but .env (in order: later files win), as roles/gateway's
    gateway_env_vars reads gateway.env for compose v1: each line that does not start with # and holds an =, NAME=the
    rest, taken literally (no shell expansion: ``export "$l"``). Ends with ``;``; "" with nothing to export."""
    return "".join(f"""while IFS= read -r l || [ -n "$l" ]; do case "$l" in '#'*) ;; *=*) export "$l" ;; esac; """
                   f"done < {shlex.quote(f)}; " for f in env_files if f != ".env")


@operation()
def compose_up(directory: str, project: str, services: list[str], wait_timeout: int, pull: str,
               host_name: str, compose: str = "v2", inputs_changed: bool = False,
               env_files: list[str] | None = None, profiles: list[str] | None = None):
    """``up`` the services when any differs from the rendered project (or this run changes the project's files:
    ``inputs_changed``), pulling images as ``pull`` says (inference_stack_image_pull: missing, always, never);
    with ``always`` every run pulls (and reports a change). Stops with the image's name when an image is missing
    and may not be pulled (never: an air-gapped lab has no registry: ship its tarball or build it).
    ``env_files``/``profiles``: compose's ``--env-file``/``--profile`` (the gateway: .env, gateway.env, profile
    gateway). A rotated key or token, a new gateway config or TLS file (files compose does not compare) needs no
    step of its own: the rendered .env / gateway.env carry each service's salted digest of its files
    (``<SERVICE>_FILES_DIGEST``, its io.gpu-inference-kit.files-digest label), so compose's config hash differs and
    ``up`` recreates exactly those services, as with roles/inference_stack and roles/gateway (no recreate task)."""
    opts, opts_v1 = compose_options(env_files, profiles), compose_options(env_files, profiles, "v1")
    # the project is rendered once its last env file is there (.env; gateway.env alone on a gateway-only host)
    rendered = {"rendered": env_files[-1]} if env_files and env_files[-1] != ".env" else {}
    current = host.get_fact(StackState, directory=directory, project=project, services=services,
                            **({"options": opts, "options_v1": opts_v1} if opts else {}), **rendered)
    if current and "" not in current:
        missing = [(s, current[s]["image"]) for s in services
                   if s in current and current[s]["image"] != "-" and current[s]["image_id"] == "-"]
        if missing and pull == "never" and state.is_executing:
            s, image = missing[0]
            yield _fail(f"image {s} ({image}) is not on {host_name} and inference_stack_image_pull is never "
                        "(air-gapped: no registry): list its `docker save` tarball in inference_stack_image_tarballs, "
                        f"build it (compose/images/build.sh), set inference_stack_{s}_image, or let it be pulled "
                        "(inference_stack_image_pull: missing)")
            return
        stale = [s for s in services if s not in current or not _up_to_date(current[s]) or
                 (pull != "never" and current[s]["image_id"] == "-")]
        if not stale and pull != "always" and not (inputs_changed and not state.is_executing):
            return
    d, p = shlex.quote(directory), shlex.quote(project)
    # v1: the env files' settings (gateway.env's) as environment, exported in the same shell (roles/gateway's
    # gateway_env_vars), then docker-compose, which reads the project folder's .env itself
    exports = f"{{ {opts_v1}true; }} && " if opts_v1 else ""
    c1 = f"docker-compose -p {p}"
    c2 = "docker compose" + (f" {opts}" if opts else "")
    svc = " ".join(shlex.quote(s) for s in services)
    if compose == "v1":
        # v1 has no --pull: `up` pulls what is missing itself, `pull` first for always; no --wait either:
        # compose/wait-healthy.sh (shipped beside compose.yaml) does the same wait
        first = f"{c1} pull {svc} && " if pull == "always" else ""
        yield StringCommand(f"cd {d} && {exports}{first}{c1} up -d {svc} && "
                            f"COMPOSE_PROJECT_NAME={p} bash wait-healthy.sh {int(wait_timeout)} {svc}")
    else:
        yield StringCommand(f"cd {d} && {c2} -p {p} up -d --pull {shlex.quote(pull)} --wait "
                            f"--wait-timeout {int(wait_timeout)} {svc}")


def _up_to_date(svc: dict[str, str]) -> bool:
    return (svc["status"] == "running" and svc["hash"] not in ("-", "") and svc["hash"] == svc["container_hash"]
            and (svc["image_id"] == "-" or svc["image_id"] == svc["container_image"]))


REPORT_FILES = ("host.json", "healthcheck.json", "bench.json", "bench.png", "bench.html")


def _last_line(r: subprocess.CompletedProcess[str]) -> str:
    """The last line of stderr, else of stdout (an error's one line)."""
    lines = ((r.stderr or "").strip() or (r.stdout or "").strip()).splitlines()
    return lines[-1] if lines else ""


def host_result(base: Mapping[str, Any], *, healthcheck_rc: int | None, healthcheck_error: str = "",
                bench_rc: int | None = None, bench_error: str = "", when: str | None = None) -> dict[str, Any]:
    """``<reports>/<host>/host.json`` as roles/verify writes it (its ``verify_host_result``): ``base`` holds host,
    engines, gpu, driver_version, gpus and reboot_pending; this adds when, whether verify ran, why not healthy (a
    healthcheck that could not run: exit 2), the exit codes, and the later failures (smoke-bench's)."""
    import datetime

    why = (f"healthcheck exited {healthcheck_rc}: {healthcheck_error.strip()}"
           if healthcheck_rc is not None and healthcheck_rc not in (0, 1) else "")
    return {
        "host": base.get("host", ""),
        "time": when or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verified": True,
        "why": why,
        "engines": list(base.get("engines") or []),
        "gpu": bool(base.get("gpu")),
        "driver_version": str(base.get("driver_version") or ""),
        "gpus": list(base.get("gpus") or []),
        "reboot_pending": bool(base.get("reboot_pending")),
        "healthcheck_rc": healthcheck_rc,
        "smoke_bench_rc": bench_rc,
        "failures": [f"smoke-bench exited {bench_rc}: {bench_error.strip()}"] if bench_rc not in (None, 0) else [],
    }


def lab_report_argv(bin_dir: str, reports_dir: str, hosts: list[str], failed: Mapping[str, str]) -> list[str]:
    """roles/verify/tasks/lab_report.yml's command line: every host of the run (``--host``; one without results
    shows as such), the hosts the run lost (``--failed``)."""
    return [f"{bin_dir}/lab-report", reports_dir, "--quiet", *(f"--host={h}" for h in hosts),
            *(f"--failed={h}={why}" for h, why in failed.items())]


def report_name(name: str) -> str:
    """A host's folder under the reports (``@local`` -> ``local``)."""
    return name.lstrip("@")


def _run_lab_report(bin_dir: str, reports_dir: str) -> str | None:
    """Write lab.html, lab.json and lab-junit.xml over every host of the run so far; None, or why it failed."""
    if not Path(bin_dir, "lab-report").exists():
        print(f"lab-report is not in {bin_dir}: each host's results are in {reports_dir}/<host>/", file=sys.stderr)
        return None
    # site.yml's report play runs on gpu_hosts:gateway_hosts: the lab gateway's host too (its healthcheck.json holds
    # the gateway's routes)
    hosts = [report_name(h.name) for h in state.inventory]
    failed = {report_name(h.name): "failed or unreachable earlier in this run" for h in state.failed_hosts}
    r = subprocess.run(lab_report_argv(bin_dir, reports_dir, hosts, failed), capture_output=True, text=True)
    if r.returncode not in (0, 1):  # 1: a host unhealthy; each host's own operation says why
        return f"lab-report exited {r.returncode}: {_last_line(r)}"
    return None


@operation()
def verify(healthcheck: list[str], report_dir: str, bench: list[str] | None = None,
           host_info: Mapping[str, Any] | None = None, bin_dir: str | None = None):
    """Run the kit's CLIs from the controller, the verify role's command lines (``stack.verify_commands``): one
    ``healthcheck --json`` for every engine (its report saved as ``report_dir/healthcheck.json``, as printed), then
    ``smoke-bench`` (bench.json, bench.png, bench.html). Then, as roles/verify does before it fails a host,
    ``host.json`` (``host_result`` of ``host_info``) and the lab report of every host so far (``lab-report`` from
    ``bin_dir`` over ``report_dir``'s parent). No command runs on the host unless a check fails (then the host
    fails with the reason)."""
    if not state.is_executing:
        return
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:  # this host's results of an earlier run are never reported as this run's
        (folder / name).unlink(missing_ok=True)
    r = subprocess.run(healthcheck, capture_output=True, text=True)
    if r.returncode in (0, 1):
        (folder / "healthcheck.json").write_text(r.stdout.rstrip("\n") + "\n")
    problem = _healthcheck_reason(healthcheck, r) if r.returncode != 0 else None
    b = None
    if bench and r.returncode == 0:
        b = subprocess.run(bench, capture_output=True, text=True)
        if b.returncode != 0:
            tail = (b.stderr or b.stdout).strip().splitlines()[-1:] or ["(no output)"]
            problem = f"smoke-bench failed (exit {b.returncode}): {tail[0]}"
    if host_info is not None:
        result = host_result(host_info, healthcheck_rc=r.returncode, healthcheck_error=r.stderr,
                             bench_rc=b.returncode if b else None, bench_error=_last_line(b) if b else "")
        (folder / "host.json").write_text(json.dumps(result, indent=4) + "\n")
    if bin_dir is not None:
        problem = problem or _run_lab_report(bin_dir, str(folder.parent))
    if problem:
        yield _fail(problem)


@operation()
def lab_report(bin_dir: str, reports_dir: str):
    """The lab report once more, after every host's verify (run it with ``_run_once``): site.yml's last play. The
    hosts the run lost are named with why (``--failed``). Changes nothing on the host."""
    if not state.is_executing:
        return
    problem = _run_lab_report(bin_dir, reports_dir)
    if problem:
        yield _fail(problem)
        return
    print(f"lab report: {reports_dir}/lab.html (lab.json, lab-junit.xml beside it)", file=sys.stderr)


def _healthcheck_reason(argv: list[str], r: subprocess.CompletedProcess[str]) -> str:
    try:
        doc = json.loads(r.stdout)
        reasons = [f"{e.get('name') or e.get('engine')}: " + "; ".join(
            f"{c['name']}: {c.get('reason', '')}" for c in e.get("checks", []) if c.get("status") == "fail")
            for e in doc.get("endpoints", []) if not e.get("healthy")]
        if reasons:
            return "healthcheck: " + " | ".join(reasons)
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
        pass
    tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
    return f"healthcheck {argv[1] if len(argv) > 1 else ''} failed (exit {r.returncode}): {tail[0]}"


def gpu_rows(probe: Mapping[str, str]) -> tuple[str, list[str]]:
    """The loaded driver's version and the GPUs' names from HostProbe's ``gpus`` (nvidia-smi's ``name,
    driver_version`` rows), as roles/verify reads them for host.json; ("", []) without a loaded driver."""
    rows = [r.strip() for r in probe.get("gpus", "").split(";") if r.strip()]
    names = [r.rsplit(",", 1)[0].strip() for r in rows]
    version = rows[0].rsplit(",", 1)[-1].strip() if rows and "," in rows[0] else ""
    return version, names
