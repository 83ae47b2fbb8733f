"""Starting, naming, killing and re-adopting agents."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from core.config import Settings
from core.errors import Forbidden, Invalid, Unavailable
from core.events import EventBus, SessionRenamed, SessionResumed, SessionSpawned
from core.providers import get_provider
from core.queue import MessageQueue
from core.sessions import Session, SessionRegistry, token_hash, validate_name
from core.state import Reason, ReasonKind, State, StateMachine
from core.tmux import Tmux
from core import worktrees as wt

log = logging.getLogger(__name__)


def write_claude_settings(path: Path, settings: dict[str, Any]) -> Path:
    """The `--settings` file the claude provider launches with: sm's hooks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))
    return path


class Caller:
    """Who is asking: an agent, or the owner (session is None).

    The owner may act as a person through a door that authenticated them; the
    label then names them as the sender ("owner via telegram (alice)").
    Doors get callers from the engine (`caller_for_token`, `caller_for_person`).
    """

    def __init__(self, session: Session | None, label: str | None = None) -> None:
        self.session = session
        self._label = label

    @property
    def is_owner(self) -> bool:
        return self.session is None

    @property
    def id(self) -> str | None:
        return self.session.id if self.session else None

    @property
    def label(self) -> str:
        if self.session:
            return self.session.name
        return self._label or "owner"

    def __repr__(self) -> str:
        return f"Caller({self.label!r})"


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        registry: SessionRegistry,
        states: StateMachine,
        queue: MessageQueue,
        tmux: Tmux,
        bus: EventBus,
        sm_command: str,
        hook_settings: dict[str, Any],
        clock: Callable[[], float] = time.time,
        worktrees: wt.Worktrees | None = None,
    ) -> None:
        self._settings = settings
        self._worktrees = worktrees
        self._registry = registry
        self._states = states
        self._queue = queue
        self._tmux = tmux
        self._bus = bus
        self._clock = clock
        self.sm = sm_command
        # Files from the phone land in each session's inbox, outside its working
        # directory. An allow rule lets Claude read them without a permission prompt;
        # `--add-dir` would instead ask "Adding a new directory … trust it?" at every
        # start (Claude Code 2.1.330), blocking each new agent on a dialog.
        claude = dict(hook_settings)
        permissions = dict(claude.get("permissions") or {})
        permissions["allow"] = [*permissions.get("allow", []), f"Read(/{settings.inbox_dir}/**)"]
        claude["permissions"] = permissions
        self.claude_settings = write_claude_settings(settings.state_dir / "claude-settings.json", claude)

    def check_may_manage(self, caller: Caller, target: Session, verb: str) -> None:
        """An agent may kill, clear or rename itself and its descendants; the owner anything."""
        if caller.is_owner or self._registry.is_self_or_descendant(target, caller.id or ""):
            return
        raise Forbidden(
            f"{caller.label} may not {verb} {target.label}: it is not you or one of your descendants"
        )

    def launch_command(self, provider_name: str, workdir: str, env: dict[str, str],
                       extra_args: list[str] | None = None) -> str:
        """The command line tmux runs; raises Invalid when the program is missing."""
        provider = get_provider(provider_name)
        configured = self._settings.command_for(provider_name)
        argv = shlex.split(configured)
        if not argv:
            raise Invalid(f"failed to start: no command configured for provider {provider_name}")
        program = shutil.which(argv[0], path=env.get("PATH"))
        if program is None:
            raise Invalid(
                f"failed to start: command {argv[0]!r} not found "
                f"(set SM_{provider_name.upper()}_COMMAND)"
            )
        argv[0] = program
        if provider.has_hooks and provider.name == "claude":
            argv += ["--settings", str(self.claude_settings)]
        if provider.name == "codex":
            # Codex has no hooks sm uses, but runs its `notify` program at the end of
            # each turn with the thread's id: sm reads that thread's usage then. A JSON
            # array of strings is a TOML array too. It replaces the person's own
            # `notify` of config.toml, which the hook then runs (hooks/entry.py).
            argv += ["-c", "notify=" + json.dumps([*shlex.split(self.sm), "hook", "CodexTurnEnd"])]
        argv += extra_args or []
        # tmux 3.3 replaces PATH with its client's even when given with -e,
        # so PATH (which must find `sm`) rides on the command line instead.
        # The agent's token is read from a 0600 file by the wrapper: on a command
        # line (tmux -e included) any local user could read it with ps.
        # tmux sometimes loses a dead pane's exit status, so the wrapper also
        # prints it as the pane's last line (see EXIT_LINE_RE in core.monitor).
        wrapper = ('SM_TOKEN="$(cat "$SM_TOKEN_FILE")"; export SM_TOKEN; '
                   '"$@"; s=$?; printf "\\n[sm] agent exited with status %s\\n" "$s"; exit "$s"')
        return shlex.join(["/usr/bin/env", f"PATH={env['PATH']}", "/bin/sh", "-c", wrapper,
                           "sm-agent", *argv])

    async def spawn(
        self,
        caller: Caller,
        prompt: str = "",
        *,
        name: str | None = None,
        provider: str = "claude",
        workdir: str | None = None,
        worktree: str | None = None,
        session_id: str | None = None,
    ) -> Session:
        """`worktree`: None, none; "" a new worktree on branch sm/<name>; else on that branch.
        `session_id`: the id another node chose for a spawn it asked of this one."""
        provider_obj = get_provider(provider)
        if workdir and any(not ch.isprintable() for ch in workdir):
            raise Invalid("the working directory holds control characters (a newline?); give a plain path")
        workdir = os.path.abspath(os.path.expanduser(workdir or (caller.session.workdir if caller.session else os.getcwd())))
        if not os.path.isdir(workdir):
            raise Invalid(f"working directory {workdir} does not exist")
        session_id = session_id or self._registry.new_id()
        name = name or f"{provider}-{session_id}"
        self._registry.check_name_free(validate_name(name))
        planned = await self._make_worktree(workdir, name, worktree) if worktree is not None else None
        if planned is not None:
            workdir = self._workdir_in(planned, workdir)
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(
            id=session_id,
            name=name,
            parent_id=caller.id,
            provider=provider,
            workdir=workdir,
            tmux_session=f"sm-{session_id}",
            pane_id=None,
            token_hash=token_hash(token),
            state="starting",
            state_reason=None,
            state_since=now,
            agent_session_id=None,
            transcript_path=None,
            idle_reminded=1,
            created_at=now,
            last_activity=now,
        )
        try:
            await self._registry.create(session)
        except Exception:
            if planned is not None:
                await asyncio.to_thread(wt.remove, planned.repo, planned.path,
                                        planned.branch if planned.new_branch else None, True)
            raise
        if planned is not None and self._worktrees is not None:
            await self._worktrees.add(session.id, planned)
        self._bus.publish(SessionSpawned(session=session.id, name=name, provider=provider,
                                         parent=caller.id, workdir=workdir))
        env = self._agent_env(session, self._write_token(session, token))
        env.update(provider_obj.extra_env)
        try:
            command = self.launch_command(provider, workdir, env)
            pane_id = await self._tmux.new_session(session.tmux_session, command, workdir, env)
        except Exception as exc:
            text = str(exc) if str(exc).startswith("failed to start") else f"failed to start: {exc}"
            await self._states.set(session, State.ERRORED, Reason(ReasonKind.START_FAILED, text),
                                   source="spawn")
            # Nothing of a failed start may live on: no half-made tmux session, no valid token.
            self.token_file(session.id).unlink(missing_ok=True)
            await self._registry.update(session, token_hash=f"revoked:{session.id}")
            try:
                await self._tmux.kill_session(session.tmux_session)
            except Exception:
                log.warning("could not remove the tmux session of a failed start (%s)", session.label)
            if planned is not None and self._worktrees is not None:
                # A worktree nobody ever worked in: nothing to keep.
                w = await self._worktrees.of(session.id)
                if w is not None and w.removed_at is None:
                    try:
                        await asyncio.to_thread(wt.remove, w.repo, w.path,
                                                w.branch if planned.new_branch else None, True)
                        await self._worktrees.removed(w)
                    except Exception:
                        log.warning("could not remove the worktree of a failed start: %s", w.path)
            return session
        await self._registry.update(session, pane_id=pane_id)
        if prompt.strip():
            await self._queue.enqueue(
                session.id, prompt, sender_id=caller.id, sender_label=caller.label
            )
        return session

    async def resume(self, caller: Caller, target: Session) -> bool:
        """Run a lost session again: the same id, name, directory, parent and topic, in a
        tmux session of the same name. True when its agent continues its conversation
        (`claude --resume <id>`); False when it starts afresh (no id known, or a
        provider without resume). Its queue, waits and its children are untouched."""
        self.check_may_manage(caller, target, "resume")
        if target.state != State.LOST:
            raise Invalid(f"{target.label} is {target.state}, not lost: only a lost session is resumed")
        if not os.path.isdir(target.workdir):
            raise Invalid(f"cannot resume {target.label}: its directory {target.workdir} is gone")
        provider = get_provider(target.provider)
        conversation = target.agent_session_id if provider.resume_flag else None
        token = secrets.token_urlsafe(32)  # the old one is only a hash: a new one for the new process
        env = self._agent_env(target, self._write_token(target, token))
        env.update(provider.extra_env)
        command = self.launch_command(target.provider, target.workdir, env,
                                      [provider.resume_flag, conversation] if conversation else [])
        try:
            await self._tmux.kill_session(target.tmux_session)  # a leftover of the same name, if any
            pane_id = await self._tmux.new_session(target.tmux_session, command, target.workdir, env)
        except Exception as exc:
            raise Unavailable(f"could not resume {target.label}: {exc}") from exc
        await self._registry.update(target, pane_id=pane_id, token_hash=token_hash(token))
        await self._states.set(target, State.STARTING, None, source=f"resume by {caller.label}")
        log.info("resumed %s (%s)", target.label,
                 f"{provider.name} --resume {conversation}" if conversation else "afresh")
        self._bus.publish(SessionResumed(session=target.id, name=target.name,
                                         conversation=bool(conversation), by=caller.label))
        return bool(conversation)

    async def _make_worktree(self, workdir: str, name: str, branch: str) -> wt.Plan:
        if self._worktrees is None:
            raise Invalid("worktrees are not available here")
        planned = await asyncio.to_thread(wt.plan, workdir, name, branch or None,
                                          self._settings.worktree_root or None)
        await asyncio.to_thread(wt.create, planned)
        return planned

    @staticmethod
    def _workdir_in(planned: wt.Plan, workdir: str) -> str:
        """Spawned in a folder of the repository: the same folder of the worktree."""
        inner = os.path.relpath(os.path.realpath(workdir), os.path.realpath(planned.repo))
        if inner == "." or inner.startswith(".."):
            return planned.path
        same = os.path.join(planned.path, inner)
        return same if os.path.isdir(same) else planned.path

    def token_file(self, session_id: str) -> Path:
        return self._settings.state_dir / "agents" / f"{session_id}.token"

    def _write_token(self, session: Session, token: str) -> Path:
        path = self.token_file(session.id)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        return path

    def _agent_env(self, session: Session, token_file: Path) -> dict[str, str]:
        sm_dir = str(Path(self.sm.split()[0]).parent)
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        return {
            "SM_SESSION_ID": session.id,
            "SM_SESSION_NAME": session.name,
            "SM_TOKEN_FILE": str(token_file),
            "SM_SOCKET": str(self._settings.socket_path),
            "SM_STATE_DIR": str(self._settings.state_dir),
            "PATH": f"{sm_dir}:{path}" if sm_dir not in path.split(":") else path,
        }

    async def kill(self, caller: Caller, target: Session) -> None:
        self.check_may_manage(caller, target, "kill")
        if not target.live:
            return
        await self._tmux.kill_session(target.tmux_session)
        await self._states.set(target, State.DEAD, Reason(ReasonKind.KILLED, f"killed by {caller.label}"),
                               source="kill")
        self.token_file(target.id).unlink(missing_ok=True)
        await self._queue.fail_all(target.id, f"session was killed by {caller.label}")

    async def rename(self, caller: Caller, target: Session, name: str) -> Session:
        self.check_may_manage(caller, target, "rename")
        if not target.live:
            raise Invalid(f"{target.label} is dead; it cannot be renamed")
        self._registry.check_name_free(name, except_id=target.id)
        old = target.name
        await self._registry.update(target, name=name)
        if target.pane_id:
            try:
                await self._tmux.rename_window(target.pane_id, name)
            except Exception:
                log.warning("could not rename the tmux window of %s", target.label)
        self._bus.publish(SessionRenamed(session=target.id, name=name, old_name=old))
        return target

    async def adopt(self) -> None:
        """After a restart: keep sessions whose pane lives, bury the rest."""
        panes = {p.session_name: p for p in await self._tmux.list_panes()}
        for session in self._registry.live():
            pane = panes.get(session.tmux_session)
            if session.pane_id is None:
                continue  # a start that failed stays errored; a lost one stays lost
            if pane is None:
                # A reboot, or the tmux server killed: the conversation is on disk.
                await self._registry.update(session, pane_id=None)
                await self._states.set(
                    session, State.LOST,
                    Reason(ReasonKind.VANISHED, "tmux session vanished while sm was down"), source="adopt"
                )
            elif pane.dead:
                await self._states.set(
                    session, State.ERRORED,
                    Reason(ReasonKind.EXITED, f"agent exited with status {pane.dead_status}"), source="adopt"
                )
            else:
                log.info("adopted %s (%s)", session.label, session.state)
