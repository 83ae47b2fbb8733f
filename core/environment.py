"""What of sm's own environment may reach agents: everything but sm's secrets.

The tmux server keeps the environment of the process that started it, and
every pane inherits it. The person's own variables (agent credentials such as
ANTHROPIC_API_KEY, proxies, SSH_AUTH_SOCK, CLAUDE_CONFIG_DIR) pass through as
they always have; sm's secrets never do: the Telegram token, NATS credentials,
any `SM_*` variable that names a token, key, password, secret or credential,
and whatever the deny-list (`SM_ENV_DENY`, shell-style patterns) adds.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Iterable, Mapping, MutableMapping

_SECRET_WORD = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|CREDS|NKEY|JWT|SEED", re.IGNORECASE)
ALWAYS = ("SM_TELEGRAM_TOKEN", "SM_NATS_*", "NATS_CREDS", "NATS_NKEY", "NATS_TOKEN", "NATS_PASSWORD")


def is_secret(name: str, deny: Iterable[str] = ()) -> bool:
    if name.startswith("SM_") and _SECRET_WORD.search(name[3:]):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in (*ALWAYS, *deny))


def secret_names(environ: Mapping[str, str], deny: Iterable[str] = ()) -> list[str]:
    deny = tuple(deny)
    return sorted(name for name in environ if is_secret(name, deny))


def scrub(environ: MutableMapping[str, str], deny: Iterable[str] = ()) -> list[str]:
    """Remove sm's secrets from `environ` (e.g. os.environ, once settings are loaded); returns their names."""
    names = secret_names(environ, deny)
    for name in names:
        del environ[name]
    return names
