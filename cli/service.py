"""`sm service install|uninstall|status`: run sm-bot as a user service.

Linux: a systemd user unit; macOS: a launchd agent. Either way the agents
must outlive the service. sm-bot starts the agents' tmux server, so under
systemd that server sits in the unit's cgroup, and the default
`KillMode=control-group` would kill every agent on a stop or a restart. The
unit says `KillMode=process`: only sm-bot gets the signal, the agents keep
running, and the next start adopts them. launchd's `AbandonProcessGroup`
does the same.

The service gets the environment of the shell that installs it: PATH (so it
finds tmux, claude, node) and every SM_* setting, in a 0600 file, since the
Telegram token may be one of them. Its working directory is the install
directory, so that a `.env` there is read as it is by a CLI run there.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from cli.common import fail

UNIT = "sm-bot.service"
LABEL = "dev.sm.sm-bot"
# An agent's own variables: never the service's.
AGENT_ONLY = frozenset({"SM_TOKEN", "SM_SESSION_ID", "SM_TOKEN_FILE", "SM_SOCKET"})


def sm_bot_path() -> str:
    beside = Path(sys.executable).with_name("sm-bot")
    return str(beside if beside.exists() else shutil.which("sm-bot") or beside)


def service_environment(environ: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in sorted(environ.items()) if k.startswith("SM_") and k not in AGENT_ONLY}
    env["PATH"] = environ.get("PATH", os.defpath)
    return env


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def unit_path() -> Path:
    return _config_home() / "systemd" / "user" / UNIT


def env_file_path() -> Path:
    return _config_home() / "sm" / "service.env"


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def _systemd_quote(value: str) -> str:
    return value.replace("%", "%%")


def systemd_unit(sm_bot: str, workdir: str, env_file: str) -> str:
    """The unit's text (pure, so that it can be verified and read in a test)."""
    return f"""\
[Unit]
Description=sm: a Telegram-first manager for swarms of coding agents
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={_systemd_quote(shlex.quote(sm_bot))}
WorkingDirectory={_systemd_quote(workdir)}
EnvironmentFile=-{_systemd_quote(env_file)}
# sm-bot starts the agents' tmux server, which then lives in this unit's
# cgroup: the default KillMode=control-group would kill every agent on a stop
# or restart. Only sm-bot is signalled; the next start adopts the agents.
KillMode=process
KillSignal=SIGTERM
TimeoutStopSec=20
Restart=on-failure
RestartSec=5

[Install]
WantedBy=default.target
"""


def env_file_text(env: dict[str, str]) -> str:
    lines = ["# Written by `sm service install`: the installing shell's PATH and SM_* settings."]
    for key, value in env.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def launchd_plist(sm_bot: str, workdir: str, env: dict[str, str], log_dir: str) -> bytes:
    import plistlib

    return plistlib.dumps({
        "Label": LABEL,
        "ProgramArguments": [sm_bot],
        "WorkingDirectory": workdir,
        "EnvironmentVariables": env,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        # launchd signals the job's whole process group on stop; the agents' tmux must live on.
        "AbandonProcessGroup": True,
        "ProcessType": "Background",
        "StandardOutPath": os.path.join(log_dir, "sm-bot.stdout.log"),
        "StandardErrorPath": os.path.join(log_dir, "sm-bot.stdout.log"),
    })


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True)


def _systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which("systemctl"):
        fail("systemctl not found: this system does not run systemd; start sm-bot under your own "
             "supervisor (see `sm service install --print`)")
    result = _run(["systemctl", "--user", *args])
    if result.returncode != 0 and "bus" in result.stderr.lower():
        fail("no systemd user session here (" + result.stderr.strip().splitlines()[0] + "); log in "
             "normally, or run `loginctl enable-linger $USER`, then try again")
    return result


def _stop_running_server() -> None:
    """An sm-bot started by hand would make the service's refuse to start: stop it (agents stay)."""
    from cli.client import Client, ServerDown

    client = Client(timeout=5)
    try:
        out = client.request("POST", "/shutdown")
    except ServerDown:
        return
    except Exception as exc:  # an old server without /shutdown, or not ours
        fail(f"an sm-bot is already running and could not be stopped ({exc}); stop it, then retry")
    from cli.server import wait_until_down

    wait_until_down(client)
    click.echo(f"stopped the sm-bot that was running (pid {out.get('pid')}); the service adopts its agents")


def _is_mac() -> bool:
    return platform.system() == "Darwin"


@click.group()
def service() -> None:
    """Run sm-bot as a service (systemd user unit on Linux, launchd agent on macOS)."""


@service.command("install")
@click.option("--print", "print_only", is_flag=True, help="Print what would be written; change nothing.")
def install(print_only: bool) -> None:
    """Write the service, start it now and at every login; it keeps the agents on restarts."""
    sm_bot, workdir = sm_bot_path(), os.getcwd()
    env = service_environment(dict(os.environ))
    from core import paths

    if _is_mac():
        text = launchd_plist(sm_bot, workdir, env, paths.state_dir())
        if print_only:
            click.echo(text.decode())
            return
        _stop_running_server()
        _write_private(plist_path(), text)
        domain = f"gui/{os.getuid()}"
        _run(["launchctl", "bootout", f"{domain}/{LABEL}"])
        result = _run(["launchctl", "bootstrap", domain, str(plist_path())])
        if result.returncode != 0:
            fail(f"launchctl bootstrap failed: {result.stderr.strip()}")
        click.echo(f"installed and started {plist_path()} (launchd agent {LABEL})")
        return
    unit = systemd_unit(sm_bot, workdir, str(env_file_path()))
    if print_only:
        click.echo(f"# {unit_path()}\n{unit}\n# {env_file_path()} (0600)\n{env_file_text(env)}", nl=False)
        return
    _systemctl("--version")
    _stop_running_server()
    _write_private(env_file_path(), env_file_text(env).encode())
    unit_path().parent.mkdir(parents=True, exist_ok=True)
    unit_path().write_text(unit)
    for args in (("daemon-reload",), ("enable", UNIT), ("restart", UNIT)):
        result = _systemctl(*args)
        if result.returncode != 0:
            fail(f"systemctl --user {' '.join(args)} failed: {result.stderr.strip()}")
    click.echo(f"installed and started {unit_path()}")
    click.echo("  status: sm service status    logs: sm logs -f    stop: systemctl --user stop sm-bot")
    linger = _run(["loginctl", "show-user", os.environ.get("USER", str(os.getuid())), "-p", "Linger"])
    if "Linger=yes" not in linger.stdout:
        click.echo(f"  to keep it running after you log out and start it at boot: "
                   f"loginctl enable-linger {os.environ.get('USER', '$USER')}")


@service.command("uninstall")
def uninstall() -> None:
    """Stop and remove the service. The agents keep running in tmux."""
    if _is_mac():
        _run(["launchctl", "bootout", f"gui/{os.getuid()}/{LABEL}"])
        plist_path().unlink(missing_ok=True)
        click.echo(f"removed {plist_path()}")
        return
    if not unit_path().exists():
        click.echo(f"no service installed ({unit_path()} does not exist)")
        return
    _systemctl("disable", "--now", UNIT)
    unit_path().unlink()
    env_file_path().unlink(missing_ok=True)
    _systemctl("daemon-reload")
    click.echo(f"removed {unit_path()}; the agents keep running (start sm-bot to manage them again)")


@service.command("status")
def status() -> None:
    """Whether the service is installed and running."""
    if _is_mac():
        if not plist_path().exists():
            fail("not installed (sm service install)")
        result = _run(["launchctl", "print", f"gui/{os.getuid()}/{LABEL}"])
        click.echo(result.stdout or result.stderr)
        sys.exit(0 if result.returncode == 0 else 3)
    if not unit_path().exists():
        fail("not installed (sm service install)")
    result = _systemctl("status", "--no-pager", UNIT)
    click.echo((result.stdout or result.stderr).rstrip())
    sys.exit(0 if result.returncode == 0 else 3)
