"""The engine is the only door into core.

The doors (bot/, cli/, hooks/) may import from core only the engine's public
surface, may use only the engine's public methods (never a private part),
and never build a `Caller` themselves: the engine hands
them out. core/ never imports a door. These checks read the source (AST), so
they see imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import AsyncIterator

import pytest

import hooks
from core.config import Settings
from core.engine import Engine
from core.errors import Forbidden, Invalid, NotFound
from core.lifecycle import Caller
from core.sessions import Session
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent
DOORS = ("bot", "cli", "hooks")

# Modules a door may import from as a whole.
PUBLIC_MODULES = {
    "core.engine",    # Engine, and the vocabulary it re-exports
    "core.config",
    "core.paths",
    "core.environment",  # which variables are sm's secrets (kept from agents)
    "core.peer",      # who is on the other end of the socket, from the kernel
    "core.errors",
    "core.store",     # for a door's own tables
    "core.spool",     # the hooks write events here while the server is down
    "core.state",     # state types
    "core.events",    # event types
    "core.humanize",  # durations as people read them; pure, shared by the CLI and the bot
    "core.version",   # the package version, from its metadata
    "core.types",     # State, ReasonKind, Reason
}
# Modules a door may import only some names from: the engine's types.
PUBLIC_NAMES = {
    "core.sessions": {"Session"},
    "core.queue": {"Message"},
    "core.lifecycle": {"Caller"},
}
# Engine attributes that are not methods (so not found on the class).
ENGINE_ATTRIBUTES = {"settings"}


def engine_surface() -> set[str]:
    names = {name for name in dir(Engine) if not name.startswith("_")}
    return names | ENGINE_ATTRIBUTES


def _is_engine(node: ast.expr) -> bool:
    """`engine`, `self._engine`, `tg.engine`, ...: an expression naming the engine."""
    if isinstance(node, ast.Name):
        return node.id in ("engine", "_engine")
    return isinstance(node, ast.Attribute) and node.attr in ("engine", "_engine")


def _imported(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(module, name) pairs; name None for a whole module."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    if node.level or not node.module:
        return []
    if node.module == "core":  # from core import paths
        return [(f"core.{alias.name}", None) for alias in node.names]
    return [(node.module, alias.name) for alias in node.names]


def door_violations(source: str, filename: str, surface: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for module, name in _imported(node):
                if module != "core" and not module.startswith("core."):
                    continue
                if module in PUBLIC_MODULES:
                    continue
                if name is not None and name in PUBLIC_NAMES.get(module, ()):
                    continue
                what = f"{module}.{name}" if name else module
                found.append(f"{where}: imports {what}, which is not the engine's public surface")
        elif isinstance(node, ast.Attribute) and _is_engine(node.value):
            if node.attr not in surface:
                kind = "a private part" if node.attr.startswith("_") else "not a public engine method"
                found.append(f"{where}: uses engine.{node.attr}, {kind}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name == "Caller":
                found.append(f"{where}: builds a Caller; ask the engine (caller_for_token, caller_for_person)")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def door_files() -> list[Path]:
    return sorted(p for door in DOORS for p in (ROOT / door).rglob("*.py"))


def test_doors_use_only_the_engines_public_surface() -> None:
    surface = engine_surface()
    found = []
    for path in door_files():
        found += door_violations(path.read_text(), str(path.relative_to(ROOT)), surface)
    assert not found, "the doors reach past the engine:\n  " + "\n  ".join(found)


def test_core_never_imports_a_door() -> None:
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for module, _ in _imported(node):
                    if module.split(".")[0] in DOORS:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {module}")
    assert not found, "core must not know its doors:\n  " + "\n  ".join(found)


# -- the checker itself ---------------------------------------------------------------


def test_the_check_sees_each_kind_of_reach_past_the_engine() -> None:
    source = """
from core.engine import Engine
from core.lifecycle import Caller
from core.sessions import Session
from core import paths, spool
from core.lifecycle import Lifecycle
from core.sessions import SessionRegistry
import core.tmux

def door(engine, tg, caller):
    engine.sessions(caller)
    tg.engine.send(caller, "a", "hi")
    engine._registry.live()
    tg.engine.registry.live()
    self._engine.frobnicate()
    Caller(None)
    import core.queue
"""
    found = door_violations(source, "door.py", engine_surface())
    assert sorted(line.split(": ", 1)[1] for line in found) == sorted([
        "imports core.lifecycle.Lifecycle, which is not the engine's public surface",
        "imports core.sessions.SessionRegistry, which is not the engine's public surface",
        "imports core.tmux, which is not the engine's public surface",
        "uses engine._registry, a private part",
        "uses engine.registry, not a public engine method",
        "uses engine.frobnicate, not a public engine method",
        "builds a Caller; ask the engine (caller_for_token, caller_for_person)",
        "imports core.queue, which is not the engine's public surface",
    ]), found


def test_the_engines_surface_is_the_contract_the_doors_are_written_against() -> None:
    contract = {
        "sessions", "session", "queue_counts", "attach_command", "output", "screen", "what", "dialog_options",
        "send", "press_keys", "press_toolbar_key", "attached", "decide_permission", "caller_for_token", "caller_for_person",
        "answer_permission",
        "subscribe", "health", "live_count", "spawn", "kill", "rename", "children", "others",
        "status", "wait", "clear", "lock", "unlock", "lock_list", "auto_lock", "hook", "drain_spool",
        "open", "start", "stop", "settings", "owner_token", "door_store", "add_pruner", "caller_for_peer", "request_shutdown", "shutdown_requested",
        "inbox_file", "receive_files", "transcribe", "share", "send_files",
        "report_link", "links", "resume", "resume_all", "lost",
        "describe", "worktrees", "prune_worktrees", "usage", "cost",
        "nodes", "node_of", "follow_other_nodes",  # several hosts (core/cluster.py)
    }
    assert engine_surface() == contract


# -- the engine checks permission itself ----------------------------------------------


@pytest.fixture
async def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Engine]:
    monkeypatch.setenv("SM_CONFIG", "/dev/null")
    settings = Settings(state_dir=tmp_path, tmux_socket="sm-test-facade-unused")
    store = await Store.open(settings.db_path)
    try:
        yield Engine(settings, store, sm_command="sm", hook_settings=hooks.settings_for("sm"))
    finally:
        await store.close()


def agent(name: str = "worker") -> Caller:
    return Caller(Session(id="a1", name=name, parent_id=None, provider="shell", workdir="/",
                          tmux_session="sm-a1", pane_id="%1", token_hash="", state="idle",
                          state_reason=None, state_since=0, agent_session_id=None, transcript_path=None,
                          idle_reminded=1, created_at=0, last_activity=0))


async def test_a_person_is_the_owner_under_the_label_their_door_gives(engine: Engine) -> None:
    person = engine.caller_for_person("owner via telegram (alice)")
    assert person.is_owner and person.id is None
    assert person.label == "owner via telegram (alice)"


async def test_only_a_person_answers_a_permission_prompt(engine: Engine) -> None:
    with pytest.raises(Forbidden, match="worker may not answer permission prompts"):
        engine.decide_permission(agent(), 123, "allow", "worker")
    person = engine.caller_for_person("owner via telegram (alice)")
    with pytest.raises(Invalid, match="unknown decision 'maybe'"):
        engine.decide_permission(person, 123, "maybe", "alice")
    with pytest.raises(NotFound, match="already answered, or has expired"):
        engine.decide_permission(person, 123, "allow", "alice")
    with pytest.raises(Forbidden, match="worker may not answer permission prompts"):
        await engine.answer_permission(agent(), "ghost", 123, "allow", "worker")
    with pytest.raises(Invalid, match="unknown decision 'maybe'"):
        await engine.answer_permission(person, "ghost", 123, "maybe", "alice")
    with pytest.raises(NotFound, match="ghost"):
        await engine.answer_permission(person, "ghost", 123, "allow", "alice")


async def test_hooks_come_only_from_agents(engine: Engine) -> None:
    with pytest.raises(Forbidden, match="SM_TOKEN"):
        await engine.hook(engine.caller_for_person("owner"), "Stop", {})


async def test_unknown_sessions_are_not_found_with_their_name(engine: Engine) -> None:
    owner = engine.caller_for_person("owner")
    for use in (engine.session(owner, "ghost"), engine.attach_command(owner, "ghost"),
                engine.output(owner, "ghost"), engine.screen(owner, "ghost"), engine.what(owner, "ghost"),
                engine.dialog_options(owner, "ghost"), engine.send(owner, "ghost", "hi"),
                engine.press_keys(owner, "ghost", "1"), engine.press_toolbar_key(owner, "ghost", "esc"),
                engine.attached(owner, "ghost")):
        with pytest.raises(NotFound, match="ghost"):
            await use
