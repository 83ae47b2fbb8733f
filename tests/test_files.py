"""Files, photos and voice between the phone and the agents, through the real bot and the strict fake Bot API."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from PIL import Image

from conftest import Server, holds, wait_for
from core.inbox import Inbox, clean_name
from telegram_harness import CHAT, ThreadedTelegram


@pytest.fixture
def telegram() -> Iterator[ThreadedTelegram]:
    tg = ThreadedTelegram()
    yield tg
    tg.close()


def start(server_factory: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path,
          **env: str) -> Server:
    return server_factory(**telegram.env(SM_TELEGRAM_ALLOWED_ROOTS=str(tmp_path), **env))


@pytest.fixture
def tg_server(server_factory: Callable[..., Server], telegram: ThreadedTelegram, tmp_path: Path) -> Server:
    return start(server_factory, telegram, tmp_path)


def png(colour: str = "red", size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def agent(server: Server, name: str) -> dict[str, Any]:
    return server.spawn_agent(name, dir=str(server.workdir))


def inbox(server: Server, session: dict[str, Any]) -> Path:
    return server.state_dir / "inbox" / session["id"]


def downloads(telegram: ThreadedTelegram) -> int:
    return len(telegram.do(lambda: telegram.fake.sent("getFile")))


def prompt_with(server: Server, text: str) -> str:
    return server.wait_prompt(lambda p: text in p, 20, f"a prompt with {text!r}")


# -- phone to agent ------------------------------------------------------------------


def test_a_photo_reaches_the_agent_as_a_path_with_its_bytes_intact(telegram: ThreadedTelegram,
                                                                  tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    picture = png("blue", (800, 600))
    sent = telegram.send_media("photo", picture, thread, caption="the bug is the blue box")
    got = prompt_with(tg_server, "sent a photo")
    header, _, rest = got.partition(" sent a photo: ")
    assert header == "[from owner via telegram (owner)]"
    path = Path(rest.splitlines()[0])
    assert rest.splitlines()[1] == "the bug is the blue box"
    assert path.parent == inbox(tg_server, session) and path.is_absolute()
    assert path.read_bytes() == picture  # the largest size, not a thumbnail
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # Acknowledged as text is: 👍 on the person's own message once it went in.
    telegram.wait(lambda t: t.do(lambda: t.fake.reactions.get((CHAT, sent["message_id"]))) == ["👍"],
                  message="the 👍 reaction")


def test_a_file_sent_as_a_reply_to_a_mirrored_message_goes_to_that_session(telegram: ThreadedTelegram,
                                                                          tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    card = telegram.wait(lambda t: next((m for m in t.messages(thread) if m.get("reply_markup")), None))
    telegram.send_media("document", b"line 1\nline 2\n", None, file_name="app.log",
                        reply_to_message_id=card["message_id"])
    path = Path(prompt_with(tg_server, "sent a file").split("sent a file: ")[1].splitlines()[0])
    assert path.name == "app.log" and path.read_bytes() == b"line 1\nline 2\n"


def test_a_21_mb_document_is_refused_with_nothing_on_disk(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    telegram.send_media("document", b"x" * (21 * 1024 * 1024), thread, file_name="huge.bin")
    reply = telegram.wait(lambda t: next((x for x in t.texts(thread) if "too big" in x), None),
                          message="the refusal")
    assert "huge.bin" in reply and "20 MB" in reply
    # Nothing reached the agent, nothing was fetched, nothing is left in its inbox.
    telegram.send_media("document", b"small", thread, file_name="small.txt")
    prompt_with(tg_server, "small.txt")
    assert not any("huge" in p for p in tg_server.prompts())
    assert [p.name for p in inbox(tg_server, session).iterdir()] == ["small.txt"]
    assert downloads(telegram) == 1


def test_a_local_bot_api_server_answers_with_a_local_path_and_bigger_files_are_allowed(
        telegram: ThreadedTelegram, server_factory: Callable[..., Server], tmp_path: Path) -> None:
    local = tmp_path / "bot-api-files"
    telegram.do(lambda: setattr(telegram.fake, "local_files_dir", local))
    server = start(server_factory, telegram, tmp_path, SM_TELEGRAM_MAX_DOWNLOAD_MB="100")
    session = agent(server, "eng")
    thread = telegram.topic_of(session)
    body = os.urandom(1024) * (21 * 1024)  # 21 MB: too big for the cloud API, fine locally
    telegram.send_media("document", body, thread, file_name="dump.bin")
    path = Path(prompt_with(server, "dump.bin").split("sent a file: ")[1].splitlines()[0])
    assert path.parent == inbox(server, session) and path.read_bytes() == body


def test_hostile_names_stay_inside_the_inbox(tmp_path: Path) -> None:
    assert clean_name("../../x") == "_.._x"
    assert clean_name("a\nb\x1b[31m.txt") == "ab[31m.txt"
    assert clean_name(".bashrc") == "bashrc"
    assert clean_name("...") == "file" and clean_name("") == "file"
    long = clean_name("a" * 300 + ".png")
    assert len(long) <= 120 and long.endswith(".png")
    box = Inbox(tmp_path / "inbox")
    made = [box.reserve("s1", name) for name in ("../../x", "../../x", "a\nb", "." * 3 + "env", "a" * 300)]
    for path in made:
        assert path.parent == tmp_path / "inbox" / "s1" and path.exists()
        assert not path.name.startswith(".") and "\n" not in path.name and len(path.name) <= 120
    assert made[0] != made[1] and made[1].name == "_.._x-2"  # never overwritten: a suffix
    assert not (tmp_path / "x").exists()


def test_a_hostile_name_from_the_phone_lands_in_the_inbox(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    telegram.send_media("document", b"evil", thread, file_name="../../.bashrc")
    path = Path(prompt_with(tg_server, "sent a file").split("sent a file: ")[1].splitlines()[0])
    assert path.parent == inbox(tg_server, session) and path.read_bytes() == b"evil"
    assert not path.name.startswith(".") and "/" not in path.name


def test_a_strangers_photo_is_never_downloaded(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    telegram.send_media("photo", png(), thread, user=telegram.stranger)
    telegram.say("owner was here", thread)  # seen after the stranger's photo: so that was dropped
    prompt_with(tg_server, "owner was here")
    assert downloads(telegram) == 0
    assert not inbox(tg_server, session).exists() or not any(inbox(tg_server, session).iterdir())
    assert not any("sent a photo" in p for p in tg_server.prompts())


def test_an_album_arrives_as_one_message_listing_every_path(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    pictures = [png(c) for c in ("red", "green", "blue")]
    for n, picture in enumerate(pictures):
        telegram.send_media("photo", picture, thread, media_group_id="album-1",
                            caption="three views" if n == 0 else None)
    got = prompt_with(tg_server, "sent 3 photos")
    lines = got.splitlines()
    assert lines[0] == "[from owner via telegram (owner)] sent 3 photos:"
    assert [Path(line).read_bytes() for line in lines[1:4]] == pictures
    assert lines[4] == "three views"
    assert sum("photo" in p for p in tg_server.prompts()) == 1


# -- voice ---------------------------------------------------------------------------


def fake_transcriber(tmp_path: Path, body: str) -> str:
    script = tmp_path / "transcribe.py"
    script.write_text(body)
    return f"{sys.executable} {script}"


def test_a_voice_note_is_transcribed_shown_and_delivered_as_text(
        telegram: ThreadedTelegram, server_factory: Callable[..., Server], tmp_path: Path) -> None:
    command = fake_transcriber(tmp_path, "import sys\n"
                                         "data = open(sys.argv[1], 'rb').read()\n"
                                         "print('please fix the login page' if data == b'OggS-voice' else 'wrong file')\n")
    server = start(server_factory, telegram, tmp_path, SM_TRANSCRIBE_COMMAND=command)
    session = agent(server, "eng")
    thread = telegram.topic_of(session)
    telegram.send_media("voice", b"OggS-voice", thread)
    assert prompt_with(server, "login page") == "[from owner via telegram (owner)] please fix the login page"
    telegram.wait(lambda t: "🎤 please fix the login page" in t.texts(thread), message="the transcript")


def test_without_a_transcriber_the_agent_gets_the_audio_and_the_person_is_told_once(
        telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    telegram.send_media("voice", b"OggS-1", thread)
    first = Path(prompt_with(tg_server, "sent a voice note").split("sent a voice note: ")[1].strip())
    assert first.read_bytes() == b"OggS-1" and first.suffix == ".ogg"
    telegram.send_media("voice", b"OggS-2", thread)
    wait_for(lambda: sum("voice note" in p for p in tg_server.prompts()) == 2, 20, message="the second note")
    notices = [x for x in telegram.texts(thread) if "SM_TRANSCRIBE_COMMAND" in x]
    assert len(notices) == 1


def test_a_hanging_transcriber_times_out_and_the_agent_gets_the_audio(
        telegram: ThreadedTelegram, server_factory: Callable[..., Server], tmp_path: Path) -> None:
    command = fake_transcriber(tmp_path, "import time\ntime.sleep(600)\n")
    server = start(server_factory, telegram, tmp_path, SM_TRANSCRIBE_COMMAND=command, SM_TRANSCRIBE_TIMEOUT="1")
    session = agent(server, "eng")
    thread = telegram.topic_of(session)
    telegram.send_media("voice", b"OggS-slow", thread)
    path = Path(prompt_with(server, "sent a voice note").split("sent a voice note: ")[1].strip())
    assert path.read_bytes() == b"OggS-slow"
    telegram.wait(lambda t: any("longer than 1s" in x for x in t.texts(thread)), message="the reason")


# -- agent to phone ------------------------------------------------------------------


def shared(telegram: ThreadedTelegram, thread: int | None) -> list[dict[str, Any]]:
    return [m for m in telegram.messages(thread) if m.get("document")]


def test_sm_share_from_an_agent_reaches_its_own_topic(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    chart = tg_server.workdir / "chart.png"
    chart.write_bytes(png("green", (400, 300)))
    report = tg_server.workdir / "report.csv"
    report.write_text("a,b\n1,2\n")
    me = tg_server.agent_env("eng")
    out = tg_server.ok("share", str(chart), "report.csv", "--caption", "results <b>", env=me)
    assert "shared 2 file(s)" in out
    files = telegram.wait(lambda t: len(shared(t, thread)) == 2 and shared(t, thread), message="the files")
    photo, document = files
    assert photo["document"]["kind"] == "photo" and photo["document"]["content"] == chart.read_bytes()
    assert photo["caption"] == "results <b>"
    assert document["document"]["file_name"] == "report.csv" and document["document"]["content"] == b"a,b\n1,2\n"


def test_an_agent_may_not_share_into_anothers_topic(telegram: ThreadedTelegram, tg_server: Server) -> None:
    agent(tg_server, "eng")
    other = agent(tg_server, "other")
    thread = telegram.topic_of(other)
    (tg_server.workdir / "x.txt").write_text("x")
    result = tg_server.sm("share", "--to", "other", "x.txt", env=tg_server.agent_env("eng"))
    assert result.returncode == 1 and "may not share into other" in result.stderr
    holds(lambda: not shared(telegram, thread), 1.0, "nothing in other's topic")


def test_sm_share_refuses_secrets_and_oversized_files(telegram: ThreadedTelegram,
                                                     server_factory: Callable[..., Server], tmp_path: Path) -> None:
    server = start(server_factory, telegram, tmp_path, SM_SHARE_MAX_MB="1")
    agent(server, "eng")
    me = server.agent_env("eng")
    (server.workdir / ".env").write_text("KEY=1")
    (server.workdir / "big.bin").write_bytes(b"0" * (2 * 1024 * 1024))
    secret = server.sm("share", ".env", env=me)
    assert secret.returncode == 1 and "looks like a secret" in secret.stderr
    big = server.sm("share", "big.bin", env=me)
    assert big.returncode == 1 and "over the 1 MB upload limit" in big.stderr
    token = server.sm("share", str(server.state_dir / "owner.token"), env=me)
    assert token.returncode == 1 and "never shared" in token.stderr


def test_an_album_is_shared_as_an_album(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    names = []
    for colour in ("red", "green", "blue"):
        (tg_server.workdir / f"{colour}.png").write_bytes(png(colour))
        names.append(f"{colour}.png")
    tg_server.ok("share", *names, env=tg_server.agent_env("eng"))
    files = telegram.wait(lambda t: len(shared(t, thread)) == 3 and shared(t, thread), message="the album")
    assert {f["document"]["kind"] for f in files} == {"photo"}
    assert len({f["document"]["media_group_id"] for f in files}) == 1 and files[0]["document"]["media_group_id"]
    assert [f["document"]["content"] for f in files] == [(tg_server.workdir / n).read_bytes() for n in names]
    assert len(telegram.do(lambda: telegram.fake.sent("sendMediaGroup"))) == 1


def test_send_from_the_phone_stays_inside_the_working_directory(telegram: ThreadedTelegram,
                                                                tg_server: Server, tmp_path: Path) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (tg_server.workdir / "link.txt").symlink_to(outside)
    (tg_server.workdir / "notes.md").write_text("# notes")
    telegram.say("/send ../outside.txt", thread)
    telegram.wait(lambda t: sum("leads outside" in x for x in t.texts(thread)) == 1, message="the .. refusal")
    telegram.say("/send link.txt", thread)
    telegram.wait(lambda t: sum("leads outside" in x for x in t.texts(thread)) == 2, message="the symlink refusal")
    telegram.say("/send *.md", thread)
    files = telegram.wait(lambda t: shared(t, thread), message="notes.md")
    assert [f["document"]["content"] for f in files] == [b"# notes"]


def test_send_of_a_secret_asks_first(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    (tg_server.workdir / ".env").write_text("API_KEY=sk-1")
    telegram.say("/send .env", thread)
    message_id, data = telegram.button(thread, "Send anyway")
    holds(lambda: not shared(telegram, thread), 0.5, "nothing sent before the press")
    telegram.press(message_id, data)
    files = telegram.wait(lambda t: shared(t, thread), message="the confirmed .env")
    assert files[0]["document"]["content"] == b"API_KEY=sk-1"
    # The confirmation is single-use: a second press sends nothing more.
    telegram.press(message_id, data)
    holds(lambda: len(shared(telegram, thread)) == 1, 1.0, "one .env only")


def test_status_shows_the_inbox_size(telegram: ThreadedTelegram, tg_server: Server) -> None:
    session = agent(tg_server, "eng")
    thread = telegram.topic_of(session)
    telegram.send_media("document", b"z" * 3000, thread, file_name="z.bin")
    prompt_with(tg_server, "z.bin")
    assert tg_server.json("status")["inbox"] == {"files": 1, "bytes": 3000}
    assert "inbox: 1 file(s), 2.9 KB" in tg_server.ok("status")


def test_old_inbox_files_are_removed_at_start(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    old = tmp_path / "state" / "inbox" / "abc123" / "old.png"
    new = old.with_name("new.png")
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    fifteen_days_ago = old.stat().st_mtime - 15 * 24 * 3600
    os.utime(old, (fifteen_days_ago, fifteen_days_ago))
    server = server_factory()
    wait_for(lambda: not old.exists(), 30, message="the old file to go")
    assert new.exists()
    assert server.json("status")["inbox"]["files"] == 1
