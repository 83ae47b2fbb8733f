"""`sm spawn --worktree`: a git worktree per child, removed when done, kept when not.

Every test uses a real git repository in a temporary directory and real
shell agents in tmux.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import Server, wait_for

SM = str(Path(sys.executable).parent / "sm")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                         env={**os.environ, **GIT_ENV})
    assert out.returncode == 0, f"git {' '.join(args)}: {out.stderr}"
    return out.stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('v1')\n")
    (path / ".gitignore").write_text("*.log\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    return path


def spawn(server: Server, name: str, repo: Path, *extra: str) -> dict:
    return server.json("spawn", "", "--provider", "shell", "--name", name, "--dir", str(repo), *extra)


def worktrees(server: Server) -> list[dict]:
    return server.json("worktrees")


def test_two_worktree_children_write_the_same_path_at_once_without_waiting(server_factory, tmp_path) -> None:
    # With no wait allowed, any contention would deny a write at once.
    server = server_factory(SM_LOCK_WAIT="0")
    repo = make_repo(server.workdir / "repo")
    a = spawn(server, "alice", repo, "--worktree")
    b = spawn(server, "bob", repo, "--worktree")
    assert a["branch"] == "sm/alice" and b["branch"] == "sm/bob"
    assert a["workdir"] == str(tmp_path / "work" / ".sm-worktrees" / "repo" / "alice")
    assert Path(a["workdir"], "src", "app.py").read_text() == "print('v1')\n"
    server.wait_state("alice", "idle")
    server.wait_state("bob", "idle")

    results: dict[str, subprocess.CompletedProcess] = {}

    def write(name: str, workdir: str) -> None:
        payload = {"hook_event_name": "PreToolUse", "tool_name": "Write",
                   "tool_input": {"file_path": f"{workdir}/src/app.py", "content": name}}
        results[name] = subprocess.run([SM, "auto-lock"], input=json.dumps(payload), text=True,
                                       env={**server.env, **server.agent_env(name)}, capture_output=True,
                                       timeout=60)

    writers = [threading.Thread(target=write, args=(s["name"], s["workdir"])) for s in (a, b)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    assert results["alice"].stdout == "" and results["bob"].stdout == "", results  # no deny
    locks = {lk["holder_name"]: lk["workspace"] for lk in server.json("status")["locks"]}
    assert locks == {"alice": a["workdir"], "bob": b["workdir"]}  # a workspace each
    # And the agents write it, each in its own checkout.
    server.ok("send", "alice", "echo alice > src/app.py")
    server.ok("send", "bob", "echo bob > src/app.py")
    wait_for(lambda: Path(a["workdir"], "src/app.py").read_text() == "alice\n", 15, message="alice's write")
    wait_for(lambda: Path(b["workdir"], "src/app.py").read_text() == "bob\n", 15, message="bob's write")
    assert (repo / "src" / "app.py").read_text() == "print('v1')\n"
    # Each is alone in its workspace.
    assert server.sm("alone", env=server.agent_env("alice")).returncode == 0
    assert server.json("children")[0]["worktree"] == a["workdir"]


def child_that_commits(server: Server, name: str, repo: Path) -> Path:
    """A child in a worktree of `repo` that commits a change to src/app.py; its worktree."""
    wt = Path(spawn(server, name, repo, "--worktree")["workdir"])
    server.wait_state(name, "idle")
    (wt / "src" / "app.py").write_text("print('v2')\n")
    git(wt, "commit", "-q", "-am", "v2")
    return wt


def test_a_clean_merged_child_leaves_nothing_behind(server: Server) -> None:
    repo = make_repo(server.workdir / "repo")
    # It commits its work (and leaves an ignored log); the work is merged.
    wt = child_that_commits(server, "fixer", repo)
    (wt / "build.log").write_text("ignored files don't count\n")
    assert worktrees(server)[0]["ahead"] == 1
    git(repo, "merge", "-q", "--ff-only", "sm/fixer")
    server.ok("kill", "fixer")
    wait_for(lambda: not wt.exists(), 15, message="the worktree to be removed")
    assert "sm/fixer" not in git(repo, "branch", "--list")
    assert worktrees(server) == []
    assert server.json("status")["worktrees"] == []


def test_a_dirty_child_keeps_its_worktree_and_status_says_how_to_remove_it(server: Server) -> None:
    repo = make_repo(server.workdir / "repo")
    child = spawn(server, "scout", repo, "--worktree", "--json")
    wt = Path(child["workdir"])
    server.wait_state("scout", "idle")
    (wt / "notes.txt").write_text("untracked counts as dirty\n")
    server.ok("kill", "scout")
    kept = wait_for(lambda: server.json("status")["worktrees"], 15, message="the kept worktree in status")
    assert [(w["path"], w["branch"], w["dirty"], w["live"]) for w in kept] == [(str(wt), "sm/scout", True, False)]
    assert wt.exists()
    text = server.ok("status")
    assert "worktrees kept" in text and f"worktree remove --force {wt}" in text
    assert "dirty" in server.ok("worktrees")
    # Prune leaves it; once clean again it goes, and its command removes the next one.
    assert server.ok("worktrees", "prune").strip() == "nothing to prune"
    (wt / "notes.txt").unlink()
    assert f"removed {wt}" in server.ok("worktrees", "prune")
    assert not wt.exists() and worktrees(server) == []


def test_a_clean_but_unmerged_child_is_kept_with_how_to_merge_it_back(server: Server) -> None:
    repo = make_repo(server.workdir / "repo")
    wt = child_that_commits(server, "builder", repo)
    server.ok("kill", "builder")
    kept = wait_for(lambda: server.json("status")["worktrees"], 15, message="the kept worktree")
    assert kept[0]["merge"] == f"git -C {repo} merge sm/builder && sm worktrees prune"
    assert f"merge:  git -C {repo} merge sm/builder" in server.ok("status")
    assert f"merge:  git -C {repo} merge sm/builder" in server.ok("worktrees")
    # The command as shown (with this test's sm and git identity): merged back, then pruned.
    command = kept[0]["merge"].replace("sm worktrees prune", f"{SM} worktrees prune")
    subprocess.run(command, shell=True, check=True, capture_output=True, cwd=server.workdir,
                   env={**server.env, **GIT_ENV})
    assert (repo / "src" / "app.py").read_text() == "print('v2')\n"
    assert not wt.exists() and worktrees(server) == []
    assert "sm/builder" not in git(repo, "branch", "--list")


def test_a_clean_but_unmerged_child_keeps_its_worktree(server: Server) -> None:
    repo = make_repo(server.workdir / "repo")
    child = spawn(server, "builder", repo, "--worktree=feature/x")
    wt = Path(child["workdir"])
    server.wait_state("builder", "idle")
    (wt / "new.py").write_text("x = 1\n")
    git(wt, "add", ".")
    git(wt, "commit", "-q", "-m", "work not merged yet")
    server.ok("kill", "builder")
    kept = wait_for(lambda: server.json("status")["worktrees"], 15, message="the kept worktree")
    assert (kept[0]["branch"], kept[0]["dirty"], kept[0]["merged"], kept[0]["ahead"]) == ("feature/x", False, False, 1)
    subprocess.run(kept[0]["remove"], shell=True, check=True, capture_output=True)
    assert not wt.exists() and "feature/x" not in git(repo, "branch", "--list")
    assert server.json("status")["worktrees"] == []


def test_refusals_are_clear_and_start_nothing(server: Server) -> None:
    plain = server.workdir / "plain"
    plain.mkdir()
    out = server.sm("spawn", "", "--provider", "shell", "--dir", str(plain), "--worktree")
    assert out.returncode == 1 and "is not in a git repository" in out.stderr, out.stderr

    empty = server.workdir / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    out = server.sm("spawn", "", "--provider", "shell", "--dir", str(empty), "--worktree")
    assert out.returncode == 1 and "has no commits yet" in out.stderr, out.stderr

    repo = make_repo(server.workdir / "repo")
    out = server.sm("spawn", "", "--provider", "shell", "--dir", str(repo), "--worktree=main")
    assert out.returncode == 1 and f"branch main is checked out at {repo}" in out.stderr, out.stderr
    spawn(server, "first", repo, "--worktree=shared")
    out = server.sm("spawn", "", "--provider", "shell", "--name", "second", "--dir", str(repo),
                    "--worktree=shared")
    assert out.returncode == 1 and "branch shared is checked out at" in out.stderr, out.stderr

    out = server.sm("spawn", "", "--provider", "shell", "--dir", str(repo), "--worktree=bad..name")
    assert out.returncode == 1 and "not a valid branch name" in out.stderr
    assert [s["name"] for s in server.json("status")["sessions"]] == ["first"]


def test_an_existing_branch_not_checked_out_is_used(server: Server) -> None:
    repo = make_repo(server.workdir / "repo")
    git(repo, "branch", "sm/again")
    child = spawn(server, "again", repo, "--worktree")
    assert child["branch"] == "sm/again"
    assert git(Path(child["workdir"]), "rev-parse", "--abbrev-ref", "HEAD").strip() == "sm/again"


def test_an_existing_worktree_folder_is_used_and_a_taken_path_refused(server_factory) -> None:
    server = server_factory()
    repo = make_repo(server.workdir / "repo")
    old = server.workdir / ".sm-worktrees" / "repo" / "someone-elses"
    old.mkdir(parents=True)
    child = spawn(server, "one", repo, "--worktree")
    assert Path(child["workdir"]).parent == old.parent and old.exists()
    # The same name again while its kept folder is still there: refused, naming it.
    Path(child["workdir"], "dirt.txt").write_text("keep me\n")
    server.ok("kill", "one")
    wait_for(lambda: server.json("status")["worktrees"], 15, message="kept")
    out = server.sm("spawn", "", "--provider", "shell", "--name", "one", "--dir", str(repo), "--worktree")
    assert out.returncode == 1 and f"branch sm/one is checked out at {child['workdir']}" in out.stderr
    out = server.sm("spawn", "", "--provider", "shell", "--name", "one", "--dir", str(repo), "--worktree=fresh")
    assert out.returncode == 1 and f"{child['workdir']} already exists" in out.stderr, out.stderr


def test_a_worktree_root_inside_the_repository_does_not_make_it_dirty(server_factory, tmp_path) -> None:
    repo = tmp_path / "work" / "repo"
    inside = server_factory(SM_WORKTREE_ROOT=str(repo / ".sm-worktrees"))
    make_repo(repo)
    c = spawn(inside, "inner", repo, "--worktree")
    assert c["workdir"] == str(repo / ".sm-worktrees" / "repo" / "inner")
    # The main checkout does not see the worktrees as untracked files.
    assert git(repo, "status", "--porcelain") == ""


def test_a_spawn_in_a_subfolder_starts_in_the_same_folder_of_the_worktree(server: Server) -> None:
    repo = make_repo(server.workdir / "repo")
    child = spawn(server, "deep", repo / "src", "--worktree")
    assert child["workdir"].endswith("/.sm-worktrees/repo/deep/src")


def test_submodules_are_checked_out_in_the_worktree(server_factory) -> None:
    # `git submodule update` in the worktree clones from a local path: allowed as a user would.
    server = server_factory(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="protocol.file.allow",
                            GIT_CONFIG_VALUE_0="always")
    lib = make_repo(server.workdir / "lib")
    repo = make_repo(server.workdir / "repo")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib), "vendor/lib")
    git(repo, "commit", "-q", "-m", "add lib")
    child = spawn(server, "withsub", repo, "--worktree")
    assert Path(child["workdir"], "vendor", "lib", "src", "app.py").read_text() == "print('v1')\n"


def test_new_with_worktree_from_the_phone(server_factory, tmp_path) -> None:
    from telegram_harness import ThreadedTelegram

    telegram = ThreadedTelegram()
    try:
        server = server_factory(**telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path)))
        repo = make_repo(server.workdir / "repo")
        telegram.say(f"/new {repo} --worktree write the tests")
        session = wait_for(lambda: next(iter(server.json("status")["sessions"]), None), 20, message="the session")
        assert session["branch"] == f"sm/{session['name']}"
        assert session["workdir"] == str(server.workdir / ".sm-worktrees" / "repo" / session["name"])
        assert server.wait_prompt(lambda p: "write the tests" in p).endswith("] write the tests")
        telegram.wait(lambda t: any("Started" in x and session["workdir"] in x for x in t.texts(None)),
                      message="the reply naming the worktree")
        # Outside a repository: the refusal, on the phone.
        plain = server.workdir / "plain"
        plain.mkdir()
        telegram.say(f"/new {plain} --worktree=topic-x go")
        telegram.wait(lambda t: any("is not in a git repository" in x for x in t.texts(None)),
                      message="the refusal")
    finally:
        telegram.close()


def test_an_agent_that_dies_clean_leaves_nothing_and_a_failed_start_neither(server_factory) -> None:
    server = server_factory(SM_CODEX_COMMAND="sm-no-such-codex")
    repo = make_repo(server.workdir / "repo")
    child = spawn(server, "quitter", repo, "--worktree")
    server.wait_state("quitter", "idle")
    server.ok("send", "quitter", "exit")
    # The worktree goes, then its branch (`git worktree remove`, then `git branch -D`).
    wait_for(lambda: not Path(child["workdir"]).exists() and "sm/quitter" not in git(repo, "branch", "--list"),
             30, message="the worktree and the branch of the dead agent to go")
    # A start that fails leaves no worktree behind either.
    out = server.sm("spawn", "", "--provider", "codex", "--name", "nocodex", "--dir", str(repo), "--worktree")
    assert out.returncode == 1 and "not found" in out.stderr, out.stderr
    assert not (server.workdir / ".sm-worktrees" / "repo" / "nocodex").exists()
    assert "sm/nocodex" not in git(repo, "branch", "--list")
