"""gpu-inference-kit with pyinfra: the second deployer, from the SAME settings and the SAME compose project.

    pyinfra @local pyinfra/deploy.py                                   # this workstation (CPU overlay without a GPU)
    pyinfra @local pyinfra/deploy.py --data gik_settings=my.yml        # with a settings file (YAML, like host_vars)
    pyinfra pyinfra/inventory.py pyinfra/deploy.py                     # the lab in inventory/hosts.yml
    ... --dry [--diff]                                                 # what would change; changes nothing

Settings: the roles' defaults, inventory/group_vars/gpu_hosts/, then a settings file (``--data gik_settings=FILE``
or ``GIK_SETTINGS=FILE``), then per-host data and ``--data key=value``; see gik_settings.py. Secrets come from files
on the controller: ``hf_secret_token_file`` and ``hf_secret_vllm_api_key_file`` (pyinfra has no vault).
A bad setting stops the run before any change, naming the setting.

Installs Docker + compose where missing (Docker's repository or the distribution's packages, as the docker role
does), writes /etc/docker/daemon.json and the root-only secret files, ships compose/ with the .env rendered from
the inference_stack role's template, loads image tarballs whose images are not on the host, brings the engines up
(``up --wait``) and verifies them from the controller with ``healthcheck`` (and ``smoke-bench`` when
``verify_smoke_bench``). The NVIDIA driver and container toolkit stay with Ansible (nvidia_driver,
container_toolkit): on a GPU host this checks they are there and stops otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gik_ops
import gik_settings as gs
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents
from pyinfra.facts.rpm import RpmPackages
from pyinfra.facts.server import Arch, LinuxDistribution
from pyinfra.operations import apt, dnf, files, server

from healthchecks.stack import load as load_catalogue
from healthchecks.stack import verify_commands
from pyinfra import host


def stop(message: str) -> None:
    """One line naming the problem, exit 2, before any operation has run."""
    print(f"pyinfra/deploy.py: {host.name}: {message}", file=sys.stderr)
    raise SystemExit(2)


def workstation_defaults(probe: dict[str, str]) -> dict[str, object]:
    """``@local`` (this workstation): where no settings file or --data says otherwise, the overlay follows the
    hardware, the ports stay on 127.0.0.1, the embedded model comes from the kit's cache (tests/setup.sh), and
    docker is left to whatever runs it when there is no systemd."""
    out: dict[str, object] = {
        "inference_stack_gpu": probe.get("nvidia_smi") == "ok" and "nvidia" in probe.get("runtimes", ""),
        "inference_stack_bind_address": "127.0.0.1",
    }
    cache = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik")) / "models"
    if cache.is_dir():
        out["inference_stack_models_dir"] = str(cache)
    if probe.get("init") != "systemd":
        out["docker_manage_service"] = False
    return out


def workstation_engines(settings: gs.Settings) -> list[str]:
    """``@local`` without a user choice of engines: those whose image this workstation has (an offline machine
    cannot pull; make demo does the same). Images are compose's own answer for the rendered .env."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, ".env").write_text(gs.render_env(settings))
        present = []
        for engine in settings.engines:
            r = subprocess.run(["docker", "compose", "--env-file", f"{d}/.env", "config", "--images", engine],
                               cwd=gs.ROOT / "compose", capture_output=True, text=True)
            image = r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""
            if not image or subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
                present.append(engine)
            else:
                print(f"pyinfra/deploy.py: {host.name}: no {engine} image ({image}) on this workstation and no "
                      "registry to pull from: leaving it out (set inference_stack_engines to choose)", file=sys.stderr)
    return present or settings.engines


# -- settings: resolved and validated before any change -------------------------------------------------------------
probe = host.get_fact(gik_ops.HostProbe)
local = host.name == "@local" or host.data.get("ansible_connection") == "local"
has_docker = bool(probe.get("docker"))
distro = host.get_fact(LinuxDistribution) or {}
facts = gik_ops.ansible_facts(distro, host.get_fact(Arch))
family = facts["os_family"]
overrides = {k: v for k, v in host.data.dict().items() if gs.setting_name(k, gs.site_roles())}


def load_settings(workstation: dict[str, object] | None) -> gs.Settings:
    return gs.load(overrides, settings_file=host.data.get("gik_settings") or os.environ.get("GIK_SETTINGS") or None,
                   group_vars=host.data.get("gik_group_vars") or os.environ.get("GIK_GROUP_VARS") or None,
                   workstation=workstation, facts=facts)


try:
    s = load_settings(workstation_defaults(probe) if local else None)
    engines_source = str(s.sources.get("inference_stack_engines", "group_vars"))
    if local and has_docker and (engines_source == "group_vars" or engines_source.startswith("roles/")):
        engines = workstation_engines(s)
        if engines != s.engines:
            s = load_settings({**workstation_defaults(probe), "inference_stack_engines": engines})
    tarballs = {str(t): gik_ops.tarball_images(t) for t in s.value("inference_stack_image_tarballs") or []}
except gs.SettingsError as e:
    stop(str(e))
except ValueError as e:
    stop(f"inference_stack_image_tarballs: {e}")

v = s.value
stack = s.stack_dir
compose_dir = f"{stack}/compose"
compose = probe.get("compose", "none")

# -- GPU hosts: driver and toolkit are Ansible's --------------------------------------------------------------------
if s.gpu:
    ansible_hint = (f"pyinfra does not install the NVIDIA driver or container toolkit: run `ansible-playbook site.yml "
                    f"--tags preflight,nvidia_driver,container_toolkit,docker --limit {host.name}` first "
                    "(roles nvidia_driver, container_toolkit), or set inference_stack_gpu: false for a CPU host")
    if probe.get("nvidia_smi") != "ok":
        what = "fails" if probe.get("nvidia_smi") == "fails" else "is missing"
        stop(f"inference_stack_gpu is true but nvidia-smi {what}; {ansible_hint}")
    if probe.get("nvidia_runtime") != "yes":
        stop(f"inference_stack_gpu is true but nvidia-container-runtime is missing; {ansible_hint}")
    if has_docker and "nvidia" not in probe.get("runtimes", "") and not (
            gs.manages_daemon_json(s) and v("docker_manage_service")):
        stop(f"inference_stack_gpu is true but Docker has no nvidia runtime; {ansible_hint}")

# -- Docker and compose (where missing), from the docker role's own repository settings ---------------------------
source = v("docker_install_from")
packages = list(v(f"docker_packages_{source}"))
wanted = packages if not has_docker else [p for p in packages if "compose" in p] if compose == "none" else []
if wanted and family == "RedHat" and source == "distro":
    stop("docker_install_from: distro: RHEL/Rocky ship no Docker Engine packages; use docker_install_from: docker "
         "(or a local mirror of it)")
if wanted:
    installed = host.get_fact(DebPackages if family == "Debian" else RpmPackages) or {}
    missing = [p for p in wanted if p not in installed]
    conflicting = [p for p in (v("docker_conflicting_packages") or {}).get(family, []) if p in installed]
    if missing and source == "docker" and v("docker_remove_conflicting") and conflicting:
        (apt if family == "Debian" else dnf).packages(name="Remove packages that conflict with Docker's",
                                                      packages=conflicting, present=False)
    if missing and source == "docker" and family == "Debian":
        files.directory(name="Create /etc/apt/keyrings", path="/etc/apt/keyrings", mode="755")
        gik_ops.fetch(name="Add Docker's repository key (or the mirror's)", url=str(v("docker_apt_key_url")),
                      dest=str(v("docker_apt_keyring")))
        files.put(name="Add Docker's repository (or the mirror)", src=StringIO(f"{v('docker_apt_line')}\n"),
                  dest="/etc/apt/sources.list.d/docker.list", user="root", group="root", mode="644")
    elif missing and source == "docker":
        files.put(name="Add Docker's repository (or a mirror)", dest="/etc/yum.repos.d/docker-ce.repo", user="root",
                  group="root", mode="644", src=StringIO(
                      f"[docker-ce-stable]\nname=Docker CE Stable - $basearch\nbaseurl={v('docker_dnf_baseurl')}\n"
                      f"enabled=1\ngpgcheck=1\ngpgkey={v('docker_dnf_key_url')}\n"))
    if missing and family == "Debian":
        apt.packages(name=f"Install Docker and compose ({source})", packages=missing, update=True)
    elif missing:
        dnf.packages(name=f"Install Docker and compose ({source})", packages=missing)

if gs.manages_daemon_json(s):
    files.directory(name="Create /etc/docker", path="/etc/docker", user="root", group="root", mode="755")
    current = host.get_fact(FileContents, path="/etc/docker/daemon.json") if v("docker_json_owner") == "nvidia_ctk" \
        else None
    daemon = files.put(name="Write /etc/docker/daemon.json",
                       src=StringIO(gs.render_daemon_json(s, "\n".join(current) if current else None)),
                       dest="/etc/docker/daemon.json", user="root", group="root", mode="644", create_remote_dir=False)
    if v("docker_manage_service") and daemon.will_change:
        server.service(name="Restart docker (live-restore keeps containers running)", service="docker",
                       restarted=True, _if=daemon.did_change)
if v("docker_manage_service"):
    server.service(name="Enable and start docker", service="docker", running=True, enabled=True)

# -- secrets (hf_secret): root-only files, never shown ----------------------------------------------------------------
files.directory(name="Create the secrets directory", path=s.secret_dir, user="root", group="root",
                mode=f"{gik_ops.SECRET_DIR_MODE:o}")
for fname, content in gik_ops.secret_files(s).items():
    gik_ops.secret_file(name=f"Write {fname}", dest=f"{s.secret_dir}/{fname}", content=content)

# -- the compose project (inference_stack) --------------------------------------------------------------------------
shipped = s.compose_files
for sub in sorted({"."} | {str(Path(f).parent) for f in shipped}):
    files.directory(name=f"Create compose/{sub}", path=os.path.normpath(f"{compose_dir}/{sub}"), user="root",
                    group="root", mode="755")
# (the folders exist by now: no remote mkdir, so --diff shows a new file's content on a fresh host too)
inputs = [files.put(name=f"Ship compose/{f}", src=str(gs.ROOT / "compose" / f), dest=f"{compose_dir}/{f}",
                    user="root", group="root", mode="755" if f.endswith(".sh") else "644", create_remote_dir=False)
          for f in shipped]
inputs.append(files.put(name="Render .env", src=StringIO(gs.render_env(s)), dest=f"{compose_dir}/.env",
                        user="root", group="root", mode="644", create_remote_dir=False))

if tarballs:
    files.directory(name="Create the image tarball folder", path=f"{stack}/images", user="root", group="root",
                    mode="755")
for tarball, images in tarballs.items():
    dest = f"{stack}/images/{Path(tarball).name}"
    files.put(name=f"Copy {Path(tarball).name}", src=tarball, dest=dest, user="root", group="root", mode="644")
    inputs.append(gik_ops.image_load(name=f"Load {Path(tarball).name} ({', '.join(images)})", dest=dest,
                                     images=images))

gik_ops.compose_up(name="Bring the engines up and wait until healthy", directory=compose_dir,
                   project=str(v("inference_stack_project_name")), services=s.services,
                   wait_timeout=int(v("inference_stack_wait_timeout")),
                   offline=bool(v("inference_stack_hf_hub_offline")),
                   host_name=host.name, compose="v1" if compose == "v1" else "v2",
                   # what --dry lists: the facts were read before this run's file changes
                   inputs_changed=any(op.will_change for op in inputs))

# -- verify from the controller (the verify role's commands) ---------------------------------------------------------
bind = str(v("inference_stack_bind_address"))
address = (("127.0.0.1" if bind in ("0.0.0.0", "::") else bind) if local
           else str(host.data.get("ssh_hostname") or host.name))
bin_dir = Path(str(v("verify_bin_dir")))
if not (bin_dir / "healthcheck").exists() and shutil.which("healthcheck"):
    bin_dir = Path(str(shutil.which("healthcheck"))).parent
# the controller's copies of the engines' API keys (the host's are root-only): hf_secret_<engine>_api_key_file
# for each engine the catalogue gives a key file whose secret is set
catalogue = load_catalogue()
secret_contents = gik_ops.secret_files(s)
key_files = {e: str(v(f"hf_secret_{e}_api_key_file")) for e in s.engines
             if (kf := catalogue.engines[e].api_key_file_setting) and secret_contents.get(Path(str(kf.default)).name)}
reports = Path(str(v("verify_reports_dir"))) / host.name.lstrip("@")
# the verify role's command line (healthchecks/stack.py builds it for both deployers)
commands = verify_commands(
    bin_dir=str(bin_dir), address=address, engines=s.engines, ports={e: s.port(e) for e in s.engines},
    models={e: s.model(e) for e in s.engines}, key_files=key_files, gpu=s.gpu, reports=str(reports),
    wait=int(v("verify_wait")), request_timeout=int(v("verify_request_timeout")),
    smoke_bench=bool(v("verify_smoke_bench")), num_prompts=int(v("verify_num_prompts")),
    concurrency=int(v("verify_concurrency")), output_len=int(v("verify_output_len")))
gik_ops.verify(name="Verify the endpoints from the controller (healthcheck, smoke-bench)",
               healthcheck=commands["healthcheck"], report_dir=str(reports), bench=commands.get("smoke-bench"))
