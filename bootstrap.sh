#!/usr/bin/env bash
# Sets up tally-tasks on a machine with only Python 3.10+ and git:
#  - installs tmux with the system's package manager (apt-get, dnf, pacman, apk or brew)
#    when it is missing, using sudo when not root; on Debian/Ubuntu also python3-venv
#    when python3 cannot make a virtualenv;
#  - creates a virtualenv in .venv and pip-installs this package with its test extras
#    (invoke, fabric, and libtmux, pytest, hypothesis, ruff, mypy for the tests).
# Safe to run again: it only does what is missing. pip runs again only when pyproject.toml,
# setup.py or the venv's Python changed (their hash is kept in .venv/.tally-bootstrap), or the
# package's scripts are gone.
set -euo pipefail
cd "$(dirname "$0")"

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "bootstrap: tally-tasks needs Python 3.10 or newer; python3 here is" \
    "$(python3 -V 2>&1 || echo missing)" >&2
  exit 1
fi

if ! command -v tmux >/dev/null 2>&1; then
  echo "bootstrap: tmux is missing; installing it with the system package manager" >&2
  if command -v apt-get >/dev/null 2>&1; then
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
  elif command -v dnf >/dev/null 2>&1; then sudo_ dnf install -y -q tmux
  elif command -v pacman >/dev/null 2>&1; then sudo_ pacman -S --noconfirm tmux
  elif command -v apk >/dev/null 2>&1; then sudo_ apk add -q tmux
  elif command -v brew >/dev/null 2>&1; then brew install tmux
  else
    echo "bootstrap: no known package manager; install tmux yourself and run again" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  if ! python3 -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    # Debian and Ubuntu ship python3 without its venv module (ensurepip)
    if command -v apt-get >/dev/null 2>&1; then
      ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
      echo "bootstrap: python3 cannot make a venv; installing python${ver}-venv" >&2
      sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" >/dev/null \
        || sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    else
      echo "bootstrap: 'python3 -m venv' fails here; install Python's venv module and run again" >&2
      exit 1
    fi
  fi
fi
stamp=.venv/.tally-bootstrap
want=$(.venv/bin/python -c 'import hashlib, sys
data = b"".join(open(f, "rb").read() for f in ("pyproject.toml", "setup.py"))
print(hashlib.sha256(data + sys.version.encode()).hexdigest())')
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x .venv/bin/tally-session ] \
  || [ ! -x .venv/bin/pytest ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  echo "$want" >"$stamp"
fi
# the package's bytecode, as `pip install .` compiles it: `inv` never writes any (invoke
# turns bytecode writing off before it loads tasks), so an editable install would compile
# every changed module again on every `inv` run; cheap, so every time (after a `git pull`)
env -u PYTHONDONTWRITEBYTECODE .venv/bin/python -m compileall -q tally_tasks >/dev/null
echo "bootstrap: ready (tmux $(tmux -V | cut -d' ' -f2), venv .venv)" >&2
