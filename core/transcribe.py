"""Voice notes to text, by the command the owner configures (SM_TRANSCRIBE_COMMAND).

The command gets the audio file's path and prints the text. `{wav}` in the
command asks for a 16 kHz mono WAV, made with ffmpeg (Telegram's voice notes
are OGG/Opus, which whisper.cpp does not read); `{path}` is the file as sent;
with neither, the path is the command's last argument. A command that fails,
prints nothing or outlives the timeout is a `TranscriptionFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import shlex
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


class TranscriptionFailed(Exception):
    pass


async def _run(argv: list[str], timeout: float) -> tuple[int, bytes, bytes]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise TranscriptionFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its children too: a shell script's sleep
        except ProcessLookupError:
            pass
        await proc.wait()
        raise TranscriptionFailed(f"{Path(argv[0]).name} took longer than {timeout:g}s") from None
    return proc.returncode or 0, out, err


async def to_wav(path: Path, timeout: float) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise TranscriptionFailed("the command needs WAV ({wav}) and ffmpeg is not installed")
    wav = path.with_name(path.stem + ".wav")
    n = 2
    while wav.exists():
        wav = path.with_name(f"{path.stem}-{n}.wav")
        n += 1
    code, _out, err = await _run([ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(path),
                                  "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(wav)], timeout)
    if code != 0:
        wav.unlink(missing_ok=True)
        raise TranscriptionFailed(f"ffmpeg could not convert the audio: {err.decode(errors='replace')[:200]}")
    wav.chmod(0o600)
    return wav


async def transcribe(command: str, path: Path, timeout: float) -> str:
    """The text of the audio at `path`; TranscriptionFailed with the reason."""
    argv = shlex.split(command)
    if not argv:
        raise TranscriptionFailed("no transcription command (SM_TRANSCRIBE_COMMAND)")
    wav: Path | None = None
    if any("{wav}" in a for a in argv):
        wav = await to_wav(path, timeout)
    if any("{wav}" in a or "{path}" in a for a in argv):
        argv = [a.replace("{wav}", str(wav)).replace("{path}", str(path)) for a in argv]
    else:
        argv.append(str(path))
    try:
        code, out, err = await _run(argv, timeout)
    finally:
        if wav is not None:
            wav.unlink(missing_ok=True)
    if code != 0:
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise TranscriptionFailed(f"{Path(argv[0]).name} exited with status {code}: {detail[0][:200]}")
    text = out.decode(errors="replace").strip()
    if not text:
        raise TranscriptionFailed(f"{Path(argv[0]).name} printed no text")
    return text
