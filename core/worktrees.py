"""Git worktrees for children: `sm spawn --worktree [BRANCH]`.

sm makes the worktree itself, with git, for every provider: the agent is then
started with the worktree as its directory, so its git root (its workspace for
locks, `alone` and `others`) is the worktree, not the shared checkout. Claude
Code's own `--worktree` is not used: it makes its worktree under
`.claude/worktrees/`, needs the folder-trust answer first, and on exit asks
the person at the terminal whether to keep it, which races the rule below.

When the session ends the worktree is removed if it is clean (untracked files
count, ignored ones don't) and its branch is merged into the branch it came
from; then its branch goes too. Otherwise it is kept and listed, with the
command that removes it.

The git calls are blocking; the engine runs them in a thread.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import Conflict, Invalid
from core.store import Store

GIT_TIMEOUT = 60.0


def git(*args: str, cwd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    out = subprocess.run(["git", "-C", cwd, *args], capture_output=True, text=True,
                         timeout=GIT_TIMEOUT, env=env)
    if check and out.returncode != 0:
        raise Invalid(f"git {' '.join(args)} failed: {(out.stderr or out.stdout).strip()[:300]}")
    return out


@dataclass
class Worktree:
    session_id: str
    repo: str
    path: str
    branch: str
    base: str
    created_at: float
    removed_at: float | None = None

    def remove_command(self) -> str:
        """What a person runs to remove it (and its branch), changes and all."""
        return (f"git -C {shlex.quote(self.repo)} worktree remove --force {shlex.quote(self.path)} && "
                f"git -C {shlex.quote(self.repo)} branch -D {shlex.quote(self.branch)}")


@dataclass
class Plan:
    repo: str
    path: str
    branch: str
    base: str
    new_branch: bool


def plan(workdir: str, name: str, branch: str | None, root: str | None) -> Plan:
    """Where the worktree of session `name` goes and on which branch; refusals as Invalid/Conflict."""
    top = git("rev-parse", "--show-toplevel", cwd=workdir, check=False)
    if top.returncode != 0:
        raise Invalid(f"{workdir} is not in a git repository; --worktree needs one (git init, and a commit)")
    repo = top.stdout.strip()
    if git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=repo, check=False).returncode != 0:
        raise Invalid(f"the repository at {repo} has no commits yet; --worktree branches off HEAD, "
                      "so commit once first")
    head = git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=repo, check=False)
    base = head.stdout.strip() if head.returncode == 0 else git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    branch = branch or f"sm/{name}"
    if git("check-ref-format", "--branch", branch, cwd=repo, check=False).returncode != 0:
        raise Invalid(f"{branch!r} is not a valid branch name")
    exists = git("show-ref", "--verify", "--quiet", f"refs/heads/{branch}", cwd=repo, check=False).returncode == 0
    if exists:
        where = checked_out_at(repo, branch)
        if where:
            raise Conflict(f"branch {branch} is checked out at {where}; give another: --worktree OTHER-BRANCH")
    repo_name = Path(repo).name
    folder = Path(root).expanduser() / repo_name if root else Path(repo).parent / ".sm-worktrees" / repo_name
    path = str(folder / name)
    if os.path.lexists(path):
        raise Conflict(f"{path} already exists (an earlier worktree?); remove it, or name the session otherwise")
    return Plan(repo, path, branch, base, not exists)


def checked_out_at(repo: str, branch: str) -> str | None:
    """The worktree that has `branch` checked out, if any."""
    listing = git("worktree", "list", "--porcelain", cwd=repo).stdout
    path = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line == f"branch refs/heads/{branch}":
            return path
    return None


def create(p: Plan) -> None:
    """Make the worktree (and its branch), with its submodules checked out."""
    folder = Path(p.path).parent
    folder.mkdir(parents=True, exist_ok=True)  # an existing .sm-worktrees is fine
    _exclude_if_inside(p.repo, folder)
    args = ["worktree", "add"] + (["-b", p.branch, p.path, "HEAD"] if p.new_branch else [p.path, p.branch])
    git(*args, cwd=p.repo)
    if (Path(p.path) / ".gitmodules").exists():
        # A new worktree has its submodules' directories but not their files.
        out = git("submodule", "update", "--init", "--recursive", cwd=p.path, check=False)
        if out.returncode != 0:
            remove(p.repo, p.path, p.branch if p.new_branch else None, force=True)
            raise Invalid(f"could not check out the submodules in the new worktree: {out.stderr.strip()[:300]}")


def _exclude_if_inside(repo: str, folder: Path) -> None:
    """A worktree root inside the repository must not make it dirty: exclude it locally."""
    try:
        relative = folder.resolve().relative_to(Path(repo).resolve())
    except ValueError:
        return
    top = relative.parts[0] if relative.parts else ""
    if not top:
        return
    common = git("rev-parse", "--git-common-dir", cwd=repo).stdout.strip()
    exclude = Path(repo, common) / "info" / "exclude"
    line = f"/{top}/"
    text = exclude.read_text() if exclude.exists() else ""
    if line not in text.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line + "\n")


def inspect(w: Worktree) -> dict[str, Any]:
    """Its state now: exists, dirty, ahead/behind its base, merged, and how to merge it."""
    out: dict[str, Any] = {"session": w.session_id, "repo": w.repo, "path": w.path, "branch": w.branch,
                           "base": w.base, "exists": os.path.isdir(w.path), "dirty": None,
                           "ahead": None, "behind": None, "merged": None, "remove": w.remove_command(),
                           "merge": None}
    if not out["exists"]:
        return out
    status = git("status", "--porcelain", cwd=w.path, check=False)
    out["dirty"] = status.returncode != 0 or bool(status.stdout.strip())
    counts = git("rev-list", "--left-right", "--count", f"{w.base}...{w.branch}", cwd=w.repo, check=False)
    if counts.returncode == 0 and len(counts.stdout.split()) == 2:
        behind, ahead = counts.stdout.split()
        out["behind"], out["ahead"] = int(behind), int(ahead)
    out["merged"] = git("merge-base", "--is-ancestor", w.branch, w.base, cwd=w.repo, check=False).returncode == 0
    if not out["merged"]:
        # Merged back where its base is checked out, it is then clean and merged: pruned.
        where = checked_out_at(w.repo, w.base)
        if where:
            out["merge"] = (f"git -C {shlex.quote(where)} merge {shlex.quote(w.branch)} && sm worktrees prune")
    return out


def remove(repo: str, path: str, branch: str | None, force: bool = False) -> None:
    args = ["worktree", "remove"] + (["--force"] if force else []) + [path]
    git(*args, cwd=repo)
    if branch:
        git("branch", "-D", branch, cwd=repo, check=False)


def remove_if_done(w: Worktree) -> tuple[bool, dict[str, Any]]:
    """Remove it when clean and merged; (removed, what it found)."""
    found = inspect(w)
    if not found["exists"]:
        git("worktree", "prune", cwd=w.repo, check=False)
        return True, found
    if found["dirty"] or not found["merged"]:
        return False, found
    try:
        remove(w.repo, w.path, w.branch)
    except Invalid as exc:
        found["error"] = str(exc)
        return False, found
    return True, found


class Worktrees:
    """The stored records; the git work is the functions above."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, session_id: str, p: Plan) -> Worktree:
        w = Worktree(session_id, p.repo, p.path, p.branch, p.base, time.time())
        await self._store.execute(
            "INSERT INTO worktrees (session_id, repo, path, branch, base, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (w.session_id, w.repo, w.path, w.branch, w.base, w.created_at))
        return w

    async def of(self, session_id: str) -> Worktree | None:
        row = await self._store.fetchone("SELECT * FROM worktrees WHERE session_id = ?", (session_id,))
        return Worktree(**dict(row)) if row else None

    async def existing(self) -> list[Worktree]:
        rows = await self._store.fetchall("SELECT * FROM worktrees WHERE removed_at IS NULL ORDER BY created_at")
        return [Worktree(**dict(row)) for row in rows]

    async def removed(self, w: Worktree) -> None:
        await self._store.execute("UPDATE worktrees SET removed_at = ? WHERE session_id = ?",
                                  (time.time(), w.session_id))
