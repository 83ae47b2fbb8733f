"""The real Claude Code CLI, driven by the scripted fake Messages API, runs a Bash tool."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from claude_home import CLAUDE_BIN, make_claude_home, require_claude  # noqa: E402
from fake_anthropic import FakeAnthropic, has_tool_result, tool_result_text  # noqa: E402

pytestmark = pytest.mark.claude


async def test_print_mode_runs_bash_tool(tmp_path: Path) -> None:
    require_claude()
    workdir = tmp_path / "work"
    workdir.mkdir()
    fake = FakeAnthropic()
    url = await fake.start()
    try:
        env = make_claude_home(tmp_path / "home", workdir, allow_bash=True, base_url=url)
        proc = await asyncio.create_subprocess_exec(
            str(CLAUDE_BIN), "-p", "RUN: echo hello-from-tool",
            cwd=workdir,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    finally:
        await fake.stop()

    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:{stdout}\nstderr:{stderr}"
    with_results = [b for b in fake.requests if has_tool_result(b)]
    assert with_results, f"no tool_result received; requests={json.dumps(fake.requests)[:2000]}"
    assert "hello-from-tool" in tool_result_text(with_results[-1])
    assert "done" in stdout
