# Sourced by scripts/run and scripts/test: installs what sm needs on a fresh machine.
# Idempotent and quiet when everything is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_apt() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

command -v tmux >/dev/null 2>&1 || { echo "installing tmux…" >&2; need_apt tmux; }
command -v git >/dev/null 2>&1 || need_apt git
# Screenshots of panes need a monospace font with box-drawing glyphs.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf ] || [ "$(uname)" != Linux ] \
  || { command -v apt-get >/dev/null 2>&1 && need_apt fonts-dejavu-core || echo "no DejaVu Sans Mono: screenshots use a fallback font" >&2; }

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
fi

# Install sm (editable) into .venv, once per change of pyproject.toml: quiet when it
# works, the whole pip log when it does not.
install_sm() {
  local spec="$1" stamp=".venv/.sm-installed"
  local want
  want="$spec $(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/sm-bot ]; then
    return 0
  fi
  if ! .venv/bin/pip install -q -e "$spec" > .venv/pip.log 2>&1; then
    echo "installing sm failed; pip said:" >&2
    cat .venv/pip.log >&2
    exit 1
  fi
  echo "$want" > "$stamp"
}
