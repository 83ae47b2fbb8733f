"""Settings, read once per process by `load_settings()`.

Sources, highest priority first:

1. environment variables prefixed `SM_` (`SM_STATE_DIR`, `SM_TELEGRAM_TOKEN`, ...)
2. a `.env` file in the working directory
3. a YAML file (`SM_CONFIG`, else `~/.config/sm/config.yaml` if it exists) shaped
   like the original project's `config.yaml`:

       server:   {host: 127.0.0.1, port: 8420, tcp: false}
       paths:    {state_dir: ~/.local/state/sm}
       tmux:     {socket: sm}
       monitor:  {idle_timeout: 300, poll_interval: 5}
       telegram: {token: "...", allowed_chat_ids: [123]}
       providers: {claude: {command: claude}}
       prices:   {claude-opus-5-5: {input: 4, output: 20, cache_write: 5, cache_read: 0.2}}

   Sections are flattened to the same names the environment uses:
   `server.port` is `server_port` (`SM_SERVER_PORT`), `paths.state_dir` is
   `state_dir`, `providers.claude.command` is `claude_command`.

The engine's settings are `Settings`; a door with settings of its own reads
them through the same sources (`SmSettings`): the Telegram door's are
`telegram.token` (`SM_TELEGRAM_TOKEN`) and the rest of that section, in
bot/telegram/settings.py.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core import paths

NODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def _default_node() -> str:
    """The short hostname, made a valid node name (lowercase; other characters become '-')."""
    short = socket.gethostname().split(".")[0].lower()
    name = re.sub(r"[^a-z0-9-]", "-", short).strip("-")[:32]
    return name or "node"


def _flatten_yaml(doc: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in doc.items():
        if not isinstance(body, dict):
            flat[section] = body
            continue
        for key, value in body.items():
            if section == "paths":
                flat[key] = value
            elif section == "prices":
                flat.setdefault("prices", {})[key] = value
            elif section == "providers" and isinstance(value, dict):
                for pkey, pvalue in value.items():
                    flat[f"{key}_{pkey}"] = pvalue
            else:
                flat[f"{section}_{key}"] = value
    return flat


def _yaml_keys(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Every setting in a config.yaml document: (its dotted name, its section, its flat name)."""
    out = []
    for section, body in doc.items():
        section = str(section)
        if not isinstance(body, dict):
            out.append((section, "", section))
            continue
        for key, value in body.items():
            key = str(key)
            if section == "providers" and isinstance(value, dict):
                out += [(f"providers.{key}.{pkey}", section, f"{key}_{pkey}") for pkey in value]
            elif section == "paths":
                out.append((f"paths.{key}", section, key))
            else:
                out.append((f"{section}.{key}", section, f"{section}_{key}"))
    return out


def config_path() -> Path | None:
    """The YAML file settings read: `SM_CONFIG`, else ~/.config/sm/config.yaml if it exists."""
    explicit = os.environ.get("SM_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    default = Path("~/.config/sm/config.yaml").expanduser()
    return default if default.exists() else None


def unused_yaml_keys(*door_settings: type["SmSettings"]) -> list[str]:
    """The config.yaml keys that neither the engine nor the given doors read (e.g.
    `paths.state_file`, which the original project had): sm-bot warns about each,
    so a setting that does nothing is not taken for one that works. A file that
    cannot be read is the settings' own error, not this one's."""
    path = config_path()
    if path is None:
        return []
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(doc, dict):
        return []
    engine = set(Settings.model_fields)
    sections = {d.yaml_section: set(d.model_fields) for d in door_settings if d.yaml_section}
    unused = []
    for dotted, section, flat in _yaml_keys(doc):
        if section in sections:
            used = dotted.split(".", 1)[-1] in sections[section]
        else:
            used = flat in engine
        if not used:
            unused.append(dotted)
    return unused


class YamlConfigSource(PydanticBaseSettingsSource):
    """The optional config.yaml, flattened to the settings' field names."""

    def _path(self) -> Path | None:
        return config_path()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = self._path()
        if path is None:
            return {}
        import yaml

        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise ValueError(f"config file {path} does not exist (SM_CONFIG)") from exc
        except OSError as exc:
            raise ValueError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"config file {path} is not valid YAML{where}: {problem}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"config file {path} must hold a mapping of sections")
        known = set(self.settings_cls.model_fields)
        section = getattr(self.settings_cls, "yaml_section", None)
        if section is None:
            found = _flatten_yaml(doc)
        else:
            body = doc.get(section) or {}
            if not isinstance(body, dict):
                raise ValueError(f"config file {path}: the {section} section must be a mapping")
            found = body
        return {k: v for k, v in found.items() if k in known}


class SmSettings(BaseSettings):
    """What every settings object of sm shares: one way to load configuration.

    The environment (`SM_...`), then `.env`, then config.yaml. The engine's
    `Settings` reads the whole YAML file, sections flattened; a door's own
    settings (e.g. bot/telegram/settings.py) name their section in
    `yaml_section` and their own `env_prefix` (`SM_TELEGRAM_`).
    """

    # An empty variable means "not set", as it does for the CLI (core/paths.py):
    # `SM_STATE_DIR=` must not put the database in the working directory, and
    # the empty lines of .env.example must load.
    model_config = SettingsConfigDict(
        env_prefix="SM_", env_file=".env", env_file_encoding="utf-8", extra="ignore",
        env_ignore_empty=True,
    )
    # The config.yaml section read, its keys as field names; None: every section, flattened.
    yaml_section: ClassVar[str | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, YamlConfigSource(settings_cls))

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable that sets `field`, as a person writes it."""
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


class Settings(SmSettings):
    """The engine's settings (and the API's). Telegram's are in bot/telegram/settings.py."""

    # Where the database, API socket, owner token, spool and logs live.
    state_dir: Path = Path(paths.DEFAULT_STATE_DIR)
    # tmux socket name (tmux -L) for the agents; never the user's default server.
    tmux_socket: str = "sm"
    # Optional TCP listener beside the Unix socket (token auth still applies).
    server_tcp: bool = False
    server_host: str = "127.0.0.1"
    server_port: int = 8420
    # Largest message `sm send` accepts, in bytes.
    max_message_bytes: int = 256 * 1024
    # Messages longer than this are delivered as the path of a file holding them.
    inline_message_bytes: int = 4096
    # One idle reminder after a session has sat idle this long (seconds)...
    monitor_idle_timeout: float = 300.0
    # ...if reminders are on at all (off by default: the card already shows "idle since 14:02").
    monitor_idle_reminder: bool = False
    # The monitor's safety net (seconds): tmux reports changes as they happen,
    # and every this often one list of all panes catches a lost report.
    monitor_poll_interval: float = 5.0
    # Launch commands, one per provider (a command line; absolute paths resolved at spawn).
    claude_command: str = "claude"
    codex_command: str = "codex"
    gemini_command: str = "gemini"
    shell_command: str = "bash --noprofile --norc -i"
    # A workspace lock lapses when its holder shows no activity for this long (seconds).
    lock_lease: float = 600.0
    # How long the file-write hook (`sm auto-lock`) waits for a held lock before denying the write.
    lock_wait: float = 30.0
    # How long a permission prompt waits for an answer from the phone before the
    # hook gives up and leaves the dialog to the terminal (seconds).
    permission_timeout: float = 300.0
    # `sm what`: command given the context on stdin; its stdout is the summary.
    summarizer_command: str = "claude -p --model haiku"
    summarizer_timeout: float = 20.0
    # Caps on spawning, so a looping agent can't fill the machine (refused with a clear message).
    max_sessions: int = Field(100, ge=1)       # live sessions in total
    max_children: int = Field(20, ge=1)        # live children of one parent
    max_spawn_depth: int = Field(5, ge=1)      # generations below the owner
    # Extra environment variables kept from agents, as shell patterns (sm's own secrets
    # always are): JSON or comma-separated, e.g. "AWS_SECRET_*,MY_CORP_TOKEN".
    env_deny: Annotated[list[str], NoDecode] = []
    # Files from the phone: each session's inbox (<state dir>/inbox/<id>/) keeps them this
    # many days; older ones are removed at start and daily.
    inbox_retention_days: float = Field(14.0, gt=0)
    # Voice notes and audio: a command given the audio file's path that prints its text
    # (e.g. whisper.cpp); empty: the agent gets the path. `{wav}` in it: a 16 kHz WAV
    # made with ffmpeg; `{path}`: the file as sent; neither: the path is the last argument.
    transcribe_command: str = ""
    transcribe_timeout: float = Field(60.0, gt=0)
    # The largest file `sm share` / `/send` takes (MB); Telegram's cloud Bot API uploads 50.
    share_max_mb: float = Field(50.0, gt=0)
    # `sm status` lists messages that could not be delivered from this many seconds back
    # (`sm status --all`: all of them).
    status_undelivered_window: float = Field(24 * 3600, gt=0)
    # History older than this many days is pruned at start and daily: dead sessions,
    # delivered messages, sent Telegram messages, long-message files.
    retention_days: float = Field(14, gt=0)
    # Logging level for sm-bot.
    log_level: str = "INFO"
    # Sessions whose tmux vanished (a reboot) are `lost`; at start: ask (list them,
    # with a Resume button), all (resume them), or never.
    resume_on_start: Literal["ask", "all", "never"] = "ask"
    # A usage limit with no reset time shown: try again after this many seconds.
    limit_retry: float = 300.0
    # Margin after a shown reset time before trying again (seconds).
    limit_margin: float = 60.0
    # What sm types into a limited agent when its limit resets, before its queue.
    limit_continue: str = "continue"
    # Where `sm spawn --worktree` puts worktrees: <root>/<repo>/<name>; empty: <repo>/../.sm-worktrees.
    worktree_root: str = ""
    # Prices in USD per million tokens, by model (a name matches longer names that start
    # with it and a '-'), over the built-in table (core/usage.py): JSON in SM_PRICES, or
    # the YAML `prices:` section, e.g. {"claude-opus-5-5": {"input": 4, "output": 20,
    # "cache_write": 5, "cache_read": 0.2}}.
    prices: Annotated[dict[str, dict[str, float]], NoDecode] = {}
    # -- several hosts (README "Several hosts"); nothing of it runs unless nats_url is set --
    # This host's name among the nodes: lowercase letters, digits and '-'; default its short hostname.
    node: str = Field(default_factory=lambda: _default_node())
    # The NATS server with JetStream the nodes share, e.g. nats://hub:4222 or tls://hub:4222; empty: one host.
    nats_url: str = ""
    # Credentials of this node's NATS user: a .creds file, or user and password, or an nkey seed file.
    nats_creds: str = ""
    nats_user: str = ""
    nats_password: str = ""
    nats_nkey_seed: str = ""
    # A CA file that signs the server's TLS certificate (with a tls:// URL); empty: the system's CAs.
    nats_ca: str = ""
    # Each node writes its heartbeat this often (seconds); another node's sessions show as
    # `unreachable` when its heartbeat is older than SM_NODE_UNREACHABLE_AFTER.
    node_heartbeat: float = Field(5.0, gt=0)
    node_unreachable_after: float = Field(15.0, gt=0)
    # Events and commands kept in the NATS streams at most this many hours and this many MB each.
    nats_retention_hours: float = Field(72.0, gt=0)
    nats_stream_max_mb: int = Field(1024, ge=1)

    @field_validator("node", mode="after")
    @classmethod
    def _node_name(cls, value: str) -> str:
        if not NODE_RE.match(value):
            raise ValueError("must be 1-32 lowercase letters, digits or '-', starting with a letter or digit "
                             "(it is part of NATS subjects)")
        return value

    @field_validator("env_deny", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        return value

    @field_validator("prices", mode="before")
    @classmethod
    def _price_table(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("must map model names to prices, e.g. {\"claude-opus-5-5\": {\"input\": 4, ...}}")
        for model, price in value.items():
            if not isinstance(price, dict) or not set(price) <= {"input", "output", "cache_write", "cache_read"}:
                raise ValueError(f"{model}: give input, output, cache_write and/or cache_read (USD per "
                                 "million tokens)")
        return value

    def price_table(self) -> dict[str, dict[str, float]]:
        """The built-in prices with the configured ones over them (a model's fields merged)."""
        from core.usage import DEFAULT_PRICES

        table = {model: dict(price) for model, price in DEFAULT_PRICES.items()}
        for model, price in self.prices.items():
            table[model] = {**table.get(model, {"input": 0, "output": 0, "cache_write": 0, "cache_read": 0}),
                            **price}
        return table

    @field_validator("log_level", mode="after")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @field_validator("lock_wait", mode="after")
    @classmethod
    def _within_hook_timeout(cls, value: float) -> float:
        # The auto-lock hook runs with a 60 s timeout in sm's hook settings; a
        # longer wait would be cut off by Claude Code and the write let through.
        if not 0 <= value <= 50:
            raise ValueError("must be between 0 and 50 seconds (the auto-lock hook's timeout is 60 s)")
        return value

    @field_validator("permission_timeout", mode="after")
    @classmethod
    def _within_permission_hook_timeout(cls, value: float) -> float:
        if not 0 < value <= 3500:
            raise ValueError("must be between 1 and 3500 seconds (the PermissionRequest hook's timeout is 3600 s)")
        return value

    @field_validator("state_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "sm.db"

    @property
    def socket_path(self) -> Path:
        explicit = os.environ.get("SM_SOCKET")
        return Path(explicit).expanduser() if explicit else self.state_dir / "sm.sock"

    @property
    def owner_token_path(self) -> Path:
        return Path(paths.owner_token_path(str(self.state_dir)))

    @property
    def inbox_dir(self) -> Path:
        return self.state_dir / "inbox"

    @property
    def spool_dir(self) -> Path:
        return Path(paths.spool_dir(str(self.state_dir)))

    def command_for(self, provider: str) -> str:
        return str(getattr(self, f"{provider}_command"))


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
