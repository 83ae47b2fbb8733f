"""sm installed as a tool: a wheel in a fresh venv, run from anywhere but the checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SM_BOT, Server, wait_for
from telegram_harness import ThreadedTelegram

PACKAGES = ("bot", "core", "cli", "hooks", "locales")


def project_version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE") and not k.startswith("SM_")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel pip builds from the checkout, and the build's own output."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, env=clean_env(), timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (path,) = out.glob("sm-*.whl")
    return path, build.stdout + build.stderr


def test_the_build_warns_about_nothing(wheel: tuple[Path, str]) -> None:
    _, log = wheel
    # pip's own notes about this machine's index configuration are not the build's.
    warnings = [line for line in log.splitlines()
                if re.search(r"warn", line, re.I) and "Location 'file:" not in line]
    assert warnings == []


def test_the_wheel_holds_every_tracked_file_of_its_packages(wheel: tuple[Path, str]) -> None:
    tracked = subprocess.run(["git", "ls-files", *PACKAGES], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert "locales/ru/LC_MESSAGES/sm.po" in tracked and "core/migrations.sql" in tracked
    names = set(zipfile.ZipFile(wheel[0]).namelist())
    missing = [path for path in tracked if path not in names]
    assert missing == []


def test_sm_bot_help_and_version_answer_without_starting_anything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = clean_env(SM_STATE_DIR=str(state), SM_CONFIG="/dev/null")
    for args, expected in ((["--version"], f"sm-bot {project_version()}"), (["--help"], "usage: sm-bot")):
        result = subprocess.run([SM_BOT, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout
    assert not state.exists()  # no state dir, no socket: nothing started


def test_wheel_in_a_fresh_venv_serves_the_cli_and_telegram(wheel: tuple[Path, str], tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)  # no system site-packages: every dependency really installed
    bin_dir = env_dir / "bin"
    install = subprocess.run([str(bin_dir / "pip"), "install", "-q", str(wheel[0])],
                             capture_output=True, text=True, env=clean_env(), timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # not the checkout: only the installed code can be imported
    elsewhere.mkdir()
    for tool in ("sm", "sm-bot"):
        out = subprocess.run([str(bin_dir / tool), "--version"], capture_output=True, text=True,
                             cwd=elsewhere, env=clean_env(), timeout=60)
        assert out.returncode == 0 and project_version() in out.stdout, out.stderr

    telegram = ThreadedTelegram()
    server = Server(tmp_path)
    env = clean_env(**{k: v for k, v in server.env.items() if k.startswith("SM_") and k != "SM_CLAUDE_COMMAND"},
                    **telegram.env())
    log = open(tmp_path / "installed-sm-bot.out", "wb")
    proc = subprocess.Popen([str(bin_dir / "sm-bot")], env=env, cwd=elsewhere, stdout=log, stderr=subprocess.STDOUT)
    try:
        def status() -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(bin_dir / "sm"), "status"], env=env, cwd=elsewhere,
                                  capture_output=True, text=True, timeout=30)

        wait_for(lambda: status().returncode == 0 or proc.poll() is not None, 60, message="the installed sm-bot")
        assert proc.poll() is None, (tmp_path / "installed-sm-bot.out").read_text()
        assert "(no sessions)" in status().stdout
        # The bot is up on the fake Bot API: it asked who it is, then started polling.
        telegram.wait(lambda t: t.do(lambda: t.fake.polls_started) > 0, 30, "the bot to poll for updates")
        assert any(name == "getMe" for name, _ in telegram.do(lambda: list(telegram.fake.calls)))
        # A shell agent started through the installed CLI: the hooks and paths point into the venv.
        spawned = subprocess.run([str(bin_dir / "sm"), "spawn", "", "--provider", "shell", "--name", "w1"],
                                 env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60)
        assert spawned.returncode == 0, spawned.stderr
        assert "w1" in status().stdout
        output = (tmp_path / "installed-sm-bot.out").read_text()
        assert "Traceback" not in output
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
        server.close()
        telegram.close()
