"""The scripted Messages API (tests/fake_anthropic.py) for benchmarks, as a process.

    python bench/_model.py LOG

prints its URL, then appends {"t": time.time(), "text": <the user's text>} to
LOG for every main (non-side) request the moment it arrives, and answers it
with the built-in script. Run apart from the benchmark so that its
timestamps never wait on the benchmark's own polling.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_anthropic import FakeAnthropic  # noqa: E402


async def main(log: str) -> None:
    fake = FakeAnthropic()

    def responder(body: dict[str, Any], text: str) -> None:
        with open(log, "a") as fh:
            fh.write(json.dumps({"t": time.time(), "text": text}) + "\n")
        return None  # the built-in script answers

    fake.set_responder(responder)
    print(await fake.start(), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
