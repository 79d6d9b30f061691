"""gpu-inference-kit with pyinfra: the second deployer, from the SAME settings and the SAME compose project.

    pyinfra @local pyinfra/deploy.py                                   # this workstation (CPU overlay without a GPU)
    pyinfra @local pyinfra/deploy.py --data gik_settings=my.yml        # with a settings file (YAML, like host_vars)
    pyinfra pyinfra/inventory.py pyinfra/deploy.py                     # the lab in inventory/hosts.yml
    ... --dry [--diff]                                                 # what would change; changes nothing

Settings: the roles' defaults, inventory/group_vars/gpu_hosts/, then a settings file (``--data gik_settings=FILE``
or ``GIK_SETTINGS=FILE``), then per-host data and ``--data key=value``; see gik_settings.py. Secrets: the vault
(an encrypted group_vars/all/vault.yml, decrypted with ``ANSIBLE_VAULT_PASSWORD_FILE`` or
``--data gik_vault_password_file=FILE``, as ansible-playbook does) or files on the controller
(``hf_secret_token_file``, ``hf_secret_<engine>_api_key_file``). A bad setting, an unreadable vault, a secret with no
value where the host holds one, or a user that cannot become root stops the run before any change, in one line.

Sends apt through the proxy (proxy role: apt reaches the no_proxy hosts DIRECT), installs Docker + compose where
missing (Docker's repository as deb822 docker.sources, or the distribution's packages, as the docker role does:
a distribution docker.io without compose is replaced by Docker's packages whole, never left without an engine),
writes /etc/docker/daemon.json, logs in to the lab's registries (``docker login --password-stdin``), writes the
root-only secret files, ships compose/ with the .env rendered from the inference_stack role's template (0600 and
never diffed when a proxy URL in it carries credentials), loads image tarballs whose images are not on the host,
brings the engines up (``up --pull <inference_stack_image_pull> --wait``), where ``gateway_enabled`` the gateway in
front of them as roles/gateway does (its config from the role's own filters, gateway.env from its template, the
master key from the vault or ``gateway_master_key_src``, root-only secret files 0400, ``--env-file .env --env-file
gateway.env --profile gateway up --wait gateway``); on a host of the inventory group ``gateway_hosts`` the lab
gateway instead, in front of every host of ``gpu_hosts`` (site.yml's last play: the role's lab config, each host at
its ``gateway_upstream_address``, else its ansible_host; a host only in ``gateway_hosts`` runs the gateway alone),
verifies them from the controller with ``healthcheck`` (and
``smoke-bench`` when ``verify_smoke_bench``), writes each host's host.json and ends with ``lab-report`` over the
results: reports/lab.html, lab.json and lab-junit.xml for the whole run, as site.yml's last play. The NVIDIA
driver and container toolkit stay with Ansible (nvidia_driver, container_toolkit): on a GPU host this checks they
are there and stops otherwise.
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
from pyinfra.facts.files import File, FileContents
from pyinfra.facts.rpm import RpmPackages
from pyinfra.facts.server import Arch, LinuxDistribution
from pyinfra.operations import apt, dnf, files, server

from healthchecks import stack as stack_mod
from healthchecks.stack import load as load_catalogue
from healthchecks.stack import verify_commands
from pyinfra import config, host, inventory


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
        # the lab's group_vars put a gateway on every engine host; a workstation has none unless it says so
        "gateway_enabled": False,
        "gateway_bind_address": "127.0.0.1",
    }
    cache = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik")) / "models"
    if cache.is_dir():
        out["inference_stack_models_dir"] = str(cache)
    if probe.get("init") != "systemd":
        out["docker_manage_service"] = False
    return out


def workstation_engines(settings: gs.Settings) -> list[str]:
    """``@local`` of an air-gapped lab (inference_stack_image_pull: never) without a user choice of engines: those
    whose image this workstation has (nothing can be pulled; make demo does the same). A connected workstation keeps
    every engine: compose pulls what is missing. Images are compose's own answer for the rendered .env."""
    if str(settings.value("inference_stack_image_pull")) != "never":
        return settings.engines
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
                print(f"pyinfra/deploy.py: {host.name}: no {engine} image ({image}) on this workstation and "
                      "inference_stack_image_pull is never (air-gapped): leaving it out (set inference_stack_engines "
                      "to choose)", file=sys.stderr)
    return present or settings.engines


def privileges(probe: dict[str, str], local: bool) -> None:
    """The deploy writes /etc (apt, docker), the stack folder and root-only secrets: it runs as root or through sudo
    (site.yml's ``become: true``). ``@local`` as a user who may sudo without a password escalates (pyinfra's
    ``_sudo``); otherwise one line says what to do, before any change."""
    escalating = host.data.get("_sudo") if host.data.get("_sudo") is not None else config.SUDO
    priv, user = probe.get("priv", "none"), probe.get("user", "?")
    if priv == "root":
        return
    if escalating:
        if priv == "none" and not config.SUDO_PASSWORD:
            stop(f"user {user} cannot sudo without a password here, and the deploy writes /etc and "
                 f"{s_dir_hint()} as root: give the sudo password (--use-sudo-password) or deploy as a user who may "
                 "sudo (nothing was changed)")
        return
    if local and priv == "sudo":
        config.SUDO = True  # as site.yml's become: true
        return
    how = ("run it as root or with --sudo (and --use-sudo-password if sudo asks for one)" if local else
           "let it sudo (ansible_become: true, the default, and --use-sudo-password if sudo asks for one) or connect "
           "as root")
    stop(f"runs as {user}, not root, without sudo, and the deploy writes /etc and {s_dir_hint()} as root: {how} "
         "(nothing was changed)")


def s_dir_hint() -> str:
    return str(host.data.get("inference_stack_dir") or "/opt/gpu-inference-kit")


# -- who we are: the deploy needs root, checked before any other fact (they run through sudo) ----------------------
probe = host.get_fact(gik_ops.HostProbe, _sudo=False)
local = host.name == "@local" or host.data.get("ansible_connection") == "local"
privileges(probe, local)
if probe.get("priv") != "root":
    as_root: dict[str, str] = host.get_fact(gik_ops.HostProbe)
    probe = {**probe, **as_root}  # docker, as root sees it

# -- settings: resolved and validated before any change -------------------------------------------------------------
has_docker = bool(probe.get("docker"))
distro = host.get_fact(LinuxDistribution) or {}
facts = gik_ops.ansible_facts(distro, host.get_fact(Arch))
family = facts["os_family"]
overrides = {k: v for k, v in host.data.dict().items() if gs.setting_name(k, gs.site_roles())}
# inventory groups (pyinfra/inventory.py): a host of gateway_hosts runs the lab gateway; one only in gateway_hosts
# runs no engines (site.yml's lab gateway play: proxy, docker, gateway). @local without an inventory: an engine host
lab_gateway = gs.LAB_GATEWAY_GROUP in host.groups
engine_host = not lab_gateway or gs.LAB_UPSTREAM_GROUP in host.groups


salt = ""  # the host's salt of the secret files' digests, once the secrets folder is known (below)


def load_settings(workstation: dict[str, object] | None) -> gs.Settings:
    return gs.load(overrides, settings_file=host.data.get("gik_settings") or os.environ.get("GIK_SETTINGS") or None,
                   group_vars=host.data.get("gik_group_vars") or os.environ.get("GIK_GROUP_VARS") or None,
                   workstation=workstation, facts=facts,
                   vault_password_file=host.data.get("gik_vault_password_file") or None,
                   # (its inventory groups: a host of gpu_hosts and gateway_hosts publishes the lab gateway's port
                   # beside its engines', which the clash check compares)
                   groups=host.groups, files_salt=salt)


try:
    s = load_settings(workstation_defaults(probe) if local else None)
    # the digests in .env and gateway.env (<SERVICE>_FILES_DIGEST, roles/inference_stack and roles/gateway) are
    # salted with the host's files_digest_salt in the secrets folder: its own, else a new one written below
    salt_file = f"{s.secret_dir}/files_digest_salt"
    salt = gik_ops.files_salt(host.get_fact(gik_ops.FilesSalt, path=salt_file))
    s = load_settings(workstation_defaults(probe) if local else None)
    engines_source = str(s.sources.get("inference_stack_engines", "group_vars"))
    if local and has_docker and (engines_source == "group_vars" or engines_source.startswith("roles/")):
        engines = workstation_engines(s)
        if engines != s.engines:
            s = load_settings({**workstation_defaults(probe), "inference_stack_engines": engines})
    tarballs = {str(t): gik_ops.tarball_images(t) for t in s.value("inference_stack_image_tarballs") or []}
    # the gateway (roles/gateway): on a host of gateway_hosts the lab gateway in front of every host of gpu_hosts
    # (site.yml's last play, gateway_mode lab), else where gateway_enabled in front of this host's engines; its
    # config, compose settings and secrets, checked before any change
    gw: gs.Gateway | None = None
    if lab_gateway:
        upstream_hosts = [(h.name, h.data.dict()) for h in inventory.get_group(gs.LAB_UPSTREAM_GROUP, default=[])]
        gw = gs.lab_gateway(s, gs.lab_hosts(
            upstream_hosts, host.name,
            # each upstream host's settings as its own deploy resolves them (this host's: its own)
            lambda name, data: s if name == host.name else gs.load_host_data(data, facts=facts)))
    elif gs.gateway_enabled(s):
        gw = gs.gateway(s)
except gs.SettingsError as e:
    stop(str(e))
except ValueError as e:
    stop(f"inference_stack_image_tarballs: {e}")

v = s.value
stack = s.stack_dir
secret_contents = gik_ops.secret_files(s)

# -- no engine published beyond loopback without an API key (healthchecks/exposure: the rule every deployer applies)
# pyinfra keys the engines whose key file the hf_secret role writes (hf_secret_<engine>_api_key_file or the vault)
refused = gik_ops.exposure_refusals(s, secret_contents) if engine_host else []
if refused:
    stop("; ".join(refused) + " (nothing was changed)")
compose_dir = f"{stack}/compose"
compose = probe.get("compose", "none")

# -- verify runs on the controller: what it checks must be reachable from here (roles/verify tasks/validate.yml,
# which site.yml's first plays run before any change): a service on loopback only of a host reached elsewhere stops
# the run naming its setting. roles/verify's verify_address: 127.0.0.1 for a local host without ansible_host, else
# its ansible_host (ssh_hostname), else its name; each service then at its bind address where that is one address
ansible_host = str(host.data.get("ssh_hostname") or "")
address = "127.0.0.1" if local and ansible_host in ("", "localhost") else (ansible_host or host.name)
inv_name = gs.inventory_name(host.name, host.data.dict())
# the gateway verify checks here: the host's own (gateway_enabled, not a gateway_hosts host) beside its engines,
# and on a gateway_hosts host the lab gateway in a run of its own (site.yml's lab gateway play)
host_gateway = engine_host and not lab_gateway and gw is not None
do_verify = gs.bool_filter(host.data.get("gik_verify", True))
typed = {k: s.value(k) for k in s.raw}
if do_verify:
    unreachable = (stack_mod.unreachable(typed, address, gateway=host_gateway, host=inv_name) if engine_host else [])
    unreachable += stack_mod.unreachable(typed, address, lab_gateway=True, host=inv_name) if lab_gateway else []
    if unreachable:
        stop(" | ".join(u.replace("--skip-tags verify", "--data gik_verify=false") for u in unreachable)
             + " (nothing was changed)")

# -- GPU hosts: driver and toolkit are Ansible's --------------------------------------------------------------------
if s.gpu and engine_host:
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

# -- the secrets: never an empty value over a secret the host holds (a vault not read, a file not given) -----------
# (an engine key is written without the whitespace around it: a blank one is empty here, no key, as hf_secret has it)
for fname, content in secret_contents.items():
    remote = host.get_fact(File, path=f"{s.secret_dir}/{fname}") if not content else None
    if remote and int(remote.get("size") or 0) > 0:
        file_setting, vault_var = gs.SECRET_SOURCES[fname]
        stop(f"{file_setting} is not set and {vault_var} is empty or missing, but {s.secret_dir}/{fname} on the host "
             f"holds a secret: the deploy never writes an empty secret over it; give {file_setting}, or the vault "
             "(group_vars/all/vault.yml with ANSIBLE_VAULT_PASSWORD_FILE or --data "
             "gik_vault_password_file=FILE), or remove the file to deploy without it (nothing was changed)")

# -- the proxy role: apt through the proxy, the no_proxy hosts (the lab's mirrors) DIRECT ------------------------
if family == "Debian" and (v("proxy_http") or v("proxy_https")):
    proxy_secret = gs.bool_filter(s.raw.get("proxy_has_credentials"))
    if proxy_secret:
        gik_ops.secret_file(name="Send apt through the proxy", dest=gs.APT_PROXY_FILE, content=gs.render_apt_proxy(s),
                            mode=0o600)
    else:
        files.put(name="Send apt through the proxy", src=StringIO(gs.render_apt_proxy(s)), dest=gs.APT_PROXY_FILE,
                  user="root", group="root", mode="644")
elif family == "Debian":
    files.file(name="Remove the apt proxy this deploy wrote when none is set", path=gs.APT_PROXY_FILE, present=False)

# -- Docker and compose (where missing), from the docker role's own repository settings ---------------------------
source = v("docker_install_from")
packages = list(v(f"docker_packages_{source}"))
if wanted_all := (not has_docker or compose == "none"):
    installed = host.get_fact(DebPackages if family == "Debian" else RpmPackages) or {}
    conflicting = [p for p in (v("docker_conflicting_packages") or {}).get(family, []) if p in installed]
else:
    installed, conflicting = {}, []
if not wanted_all:
    wanted: list[str] = []
elif not has_docker or (source == "docker" and conflicting):
    # a host without Docker, or the distribution's Docker (docker.io, containerd, runc) without compose: Docker's
    # packages whole, as the docker role installs them (never the compose plugin alone beside a removed engine)
    wanted = packages
else:
    wanted = [p for p in packages if "compose" in p]  # an engine of the same source (or none known): compose
if wanted and family == "RedHat" and source == "distro":
    stop("docker_install_from: distro: RHEL/Rocky ship no Docker Engine packages; use docker_install_from: docker "
         "(or a local mirror of it)")
missing = [p for p in wanted if p not in installed]
if missing and source == "docker" and conflicting and not v("docker_remove_conflicting"):
    stop(f"{', '.join(conflicting)} (the distribution's Docker) {'is' if len(conflicting) == 1 else 'are'} installed "
         "and docker_remove_conflicting is false, so Docker's packages cannot replace them: set "
         "docker_install_from: distro to keep this engine (adds the distribution's compose), or "
         "docker_remove_conflicting: true to replace it with Docker's packages (nothing was changed)")
if missing and source == "docker" and family == "Debian":
    # apt refuses every source while two of them give Docker's URI different Signed-By values (roles/docker)
    others: list[str] = host.get_fact(gik_ops.AptSourcesFor, uri=str(v("docker_apt_uri"))) or []
    legacy, sources_file = str(v("docker_apt_legacy_list")), str(v("docker_apt_sources"))
    left = [f for f in others if f not in (legacy, sources_file)]
    if left:
        stop(f"{', '.join(left)} also point{'s' if len(left) == 1 else ''} at {v('docker_apt_uri')}: apt refuses two "
             f"sources for one URI with different Signed-By. Remove them; this deploy keeps Docker's documented "
             f"{sources_file} (deb822, Signed-By {v('docker_apt_keyring')}) (nothing was changed)")
if missing and source == "docker" and conflicting:
    (apt if family == "Debian" else dnf).packages(name="Remove packages that conflict with Docker's",
                                                  packages=conflicting, present=False)
if missing and source == "docker" and family == "Debian":
    if legacy in others:
        files.file(name="Remove the one-line docker.list that older versions wrote", path=legacy, present=False)
    files.directory(name="Create /etc/apt/keyrings", path="/etc/apt/keyrings", mode="755")
    gik_ops.fetch(name="Add Docker's repository key (or the mirror's)", url=str(v("docker_apt_key_url")),
                  dest=str(v("docker_apt_keyring")))
    files.put(name="Add Docker's repository (or the mirror) as Docker's documentation does (deb822 docker.sources)",
              src=StringIO(gs.render_docker_sources(s, facts)), dest=sources_file, user="root", group="root",
              mode="644")
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

# the lab's private registries (docker role: root's Docker config, 0600; the password goes through stdin)
for login in v("docker_registry_logins") or []:
    gik_ops.registry_login(name=f"Log in to {login['registry']}", registry=str(login["registry"]),
                           username=str(login["username"]), password=str(login["password"]))

# -- secrets (hf_secret): root-only files, never shown ----------------------------------------------------------------
files.directory(name="Create the secrets directory", path=s.secret_dir, user="root", group="root",
                mode=f"{gik_ops.SECRET_DIR_MODE:o}")
for fname, content in secret_contents.items():
    gik_ops.secret_file(name=f"Write {fname}", dest=f"{s.secret_dir}/{fname}", content=content)
# (the role writes it once, force: false; the host's own is what was read above, so this writes only a new one)
gik_ops.secret_file(name="Keep the digests' salt on the host", dest=salt_file, content=salt)

# -- the compose project (inference_stack) --------------------------------------------------------------------------
# (a gateway-only host: compose.yaml, as roles/gateway ships it, and wait-healthy.sh for compose v1's wait; none of
# the engines' overlays, images or scripts)
shipped = s.compose_files if engine_host else [f for f in s.compose_files if f in ("compose.yaml", "wait-healthy.sh")]
for sub in sorted({"."} | {str(Path(f).parent) for f in shipped}):
    files.directory(name=f"Create compose/{sub}", path=os.path.normpath(f"{compose_dir}/{sub}"), user="root",
                    group="root", mode="755")
# (the folders exist by now: no remote mkdir, so --diff shows a new file's content on a fresh host too)
inputs = [files.put(name=f"Ship compose/{f}", src=str(gs.ROOT / "compose" / f), dest=f"{compose_dir}/{f}",
                    user="root", group="root", mode="755" if f.endswith(".sh") else "644", create_remote_dir=False)
          for f in shipped]
# (a gateway-only host gets no .env: roles/gateway reads gateway.env alone there, and it runs no engines)
if engine_host and gs.bool_filter(s.raw.get("inference_stack_env_has_secret")):  # proxy credentials: root-only
    inputs.append(gik_ops.secret_file(name="Render .env", dest=f"{compose_dir}/.env", content=gs.render_env(s),
                                      mode=0o600))
elif engine_host:
    inputs.append(files.put(name="Render .env", src=StringIO(gs.render_env(s)), dest=f"{compose_dir}/.env",
                            user="root", group="root", mode="644", create_remote_dir=False))

# (the engines' images, roles/inference_stack's: a gateway-only host runs no engines and gets none of them)
if tarballs and engine_host:
    files.directory(name="Create the image tarball folder", path=f"{stack}/images", user="root", group="root",
                    mode="755")
for tarball, images in tarballs.items() if engine_host else ():
    dest = f"{stack}/images/{Path(tarball).name}"
    files.put(name=f"Copy {Path(tarball).name}", src=tarball, dest=dest, user="root", group="root", mode="644")
    inputs.append(gik_ops.image_load(name=f"Load {Path(tarball).name} ({', '.join(images)})", dest=dest,
                                     images=images))

if engine_host:
    gik_ops.compose_up(name="Bring the engines up and wait until healthy", directory=compose_dir,
                       project=str(v("inference_stack_project_name")), services=s.services,
                       wait_timeout=int(v("inference_stack_wait_timeout")),
                       pull=str(v("inference_stack_image_pull")),
                       host_name=host.name, compose="v1" if compose == "v1" else "v2",
                       # what --dry lists: the facts were read before this run's file changes
                       # (a rotated key or token changes .env's <SERVICE>_FILES_DIGEST: compose recreates exactly
                       # the services that mount it, as with roles/inference_stack)
                       inputs_changed=any(op.will_change for op in inputs))

# -- the gateway (roles/gateway): one URL and key in front of this host's engines, or of the lab's hosts ----------
if gw is not None:
    # (the master key, the engine keys (hf_secret's bytes: written above on an engine host), the fallback's token,
    # the TLS pair; each in gateway.env's digest, so compose recreates the gateway when one changes)
    for name, content in gw.secrets.items():
        if name not in secret_contents:
            gik_ops.secret_file(name=f"Write {name}", dest=f"{s.secret_dir}/{name}", content=content)
    for name, src in gw.tls.items():
        gik_ops.secret_file(name=f"Copy {name}", dest=f"{s.secret_dir}/{name}", content=Path(src).read_text())
    files.directory(name="Create compose/gateway", path=f"{compose_dir}/gateway", user="root", group="root",
                    mode="755")
    config_op = files.put(name="Write the gateway's config", src=StringIO(gw.config),
                          dest=f"{compose_dir}/gateway/config.yaml", user="root", group="root", mode="644",
                          create_remote_dir=False)
    if gw.env_secret:  # a proxy URL with credentials: root-only, never diffed (roles/gateway: 0600, no_log)
        gateway_env = gik_ops.secret_file(name="Write the gateway's compose settings",
                                          dest=f"{compose_dir}/gateway.env", content=gw.env, mode=0o600)
    else:
        gateway_env = files.put(name="Write the gateway's compose settings", src=StringIO(gw.env),
                                dest=f"{compose_dir}/gateway.env", user="root", group="root", mode="644",
                                create_remote_dir=False)
    # roles/gateway: --env-file .env --env-file gateway.env --profile gateway up --wait gateway (gateway.env alone
    # on a gateway-only host; compose v1: .env, gateway.env's settings as environment); a new config or secret
    # changes gateway.env's digest (the gateway's files-digest label): compose recreates it, as with the role
    gik_ops.compose_up(name="Bring the gateway up and wait until healthy", directory=compose_dir,
                       project=str(v("inference_stack_project_name")),
                       services=[gs.CATALOGUE["gateway"].compose_service], wait_timeout=300,
                       pull=str(v("inference_stack_image_pull")), host_name=host.name,
                       compose="v1" if compose == "v1" else "v2",
                       env_files=[".env", "gateway.env"] if engine_host else ["gateway.env"],
                       profiles=["gateway"],
                       inputs_changed=gateway_env.will_change or config_op.will_change
                       or any(op.will_change for op in inputs))

# -- verify from the controller (the verify role's commands) ---------------------------------------------------------
bin_dir = Path(str(v("verify_bin_dir")))
if not (bin_dir / "healthcheck").exists() and shutil.which("healthcheck"):
    bin_dir = Path(str(shutil.which("healthcheck"))).parent
# the controller's copies of the engines' API keys (the host's are root-only): hf_secret_<engine>_api_key_file
# for each engine the catalogue gives a key file whose secret is set
catalogue = load_catalogue()
# (a key given through the vault alone: a 0600 copy on the controller for this run, removed when it ends)
key_files = gik_ops.verify_key_files(s.engines, catalogue, secret_contents,
                                     {e: v(f"hf_secret_{e}_api_key_file") for e in s.engines})
reports_root = Path(str(v("verify_reports_dir")))
reports = reports_root / gik_ops.report_name(host.name)
driver_version, gpu_names = gik_ops.gpu_rows(probe)


def gateway_endpoint() -> dict[str, str] | None:
    """roles/verify's verify_gateway: the gateway at the address verify reaches it at (https with the lab's
    certificate), its model, the controller's copy of the master key (gateway_master_key_src, else a 0600 copy of
    this run, removed when it ends)."""
    if gw is None:
        return None
    where = stack_mod.verify_addresses(typed, address, gateway=True).get("gateway", address)
    port = v("gateway_port") if v("gateway_port") is not None else catalogue.settings["gateway_port"].default
    model = v("gateway_model") if v("gateway_model") is not None else catalogue.settings["gateway_model"].default
    key_file = str(v("gateway_master_key_src") or "") or gik_ops.private_copy("gateway",
                                                                              gw.secrets["gateway_master_key"])
    return {"url": stack_mod.gateway_url(where, port, tls=bool(gw.tls)), "model": str(model), "key_file": key_file}


if engine_host and do_verify:
    # the verify role's command line (healthchecks/stack.py builds it for both deployers): the engines, and the
    # host's own gateway beside them (its routes, 401 without the key, upstream states)
    commands = verify_commands(
        bin_dir=str(bin_dir), address=address, engines=s.engines, ports={e: s.port(e) for e in s.engines},
        models={e: s.model(e) for e in s.engines}, key_files=key_files, gpu=s.gpu, reports=str(reports),
        wait=int(v("verify_wait")), request_timeout=int(v("verify_request_timeout")),
        smoke_bench=bool(v("verify_smoke_bench")), num_prompts=int(v("verify_num_prompts")),
        concurrency=int(v("verify_concurrency")), output_len=int(v("verify_output_len")),
        addresses=stack_mod.verify_addresses(typed, address, gateway=host_gateway),
        gateway=gateway_endpoint() if host_gateway else None,
        ca_bundle=str(v("verify_gateway_ca_bundle") or "") if host_gateway else "")
    gik_ops.verify(name="Verify the endpoints from the controller (healthcheck, smoke-bench)",
                   healthcheck=commands["healthcheck"], report_dir=str(reports), bench=commands.get("smoke-bench"),
                   # host.json (roles/verify's verify_host_result): pyinfra installs no driver: no reboot pending
                   host_info={"host": reports.name, "engines": s.engines, "gpu": s.gpu,
                              "driver_version": driver_version, "gpus": gpu_names, "reboot_pending": False},
                   bin_dir=str(bin_dir))
if lab_gateway and do_verify:
    # site.yml's lab gateway play (roles/verify, verify_lab_gateway): the lab gateway alone, no engines, no GPU, no
    # smoke-bench; its results in reports/<host>/ (<host>-lab-gateway when the host is a gpu host too)
    lab_reports = reports_root / (reports.name + ("-lab-gateway" if engine_host else ""))
    commands = verify_commands(
        bin_dir=str(bin_dir), address=address, engines=[], ports={}, models={}, key_files={}, gpu=False,
        reports=str(lab_reports), wait=int(v("verify_wait")), request_timeout=int(v("verify_request_timeout")),
        smoke_bench=False, num_prompts=int(v("verify_num_prompts")), concurrency=int(v("verify_concurrency")),
        output_len=int(v("verify_output_len")), addresses=stack_mod.verify_addresses(typed, address, gateway=True),
        gateway=gateway_endpoint(), ca_bundle=str(v("verify_gateway_ca_bundle") or ""))
    gik_ops.verify(name="Verify the lab gateway from the controller (healthcheck)",
                   healthcheck=commands["healthcheck"], report_dir=str(lab_reports),
                   host_info={"host": reports.name, "engines": [], "gpu": False, "driver_version": "", "gpus": [],
                              "reboot_pending": False})
# -- one report for the whole lab (site.yml's last play, gpu_hosts:gateway_hosts): every host of the run, once all
# have been verified ------------------------------------------------------------------------------------------------
gik_ops.lab_report(name="Write the lab report (lab.html, lab.json, lab-junit.xml)", bin_dir=str(bin_dir),
                   reports_dir=str(reports.parent), _run_once=True)
