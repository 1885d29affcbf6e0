# Sourced by scripts/demo and scripts/test: create or reuse .venv and install what it needs.
# Reinstalls only when pyproject.toml (or the extras asked for) changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
EXTRAS="${1:-demo}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($PYTHON --version)" >&2
    "$PYTHON" -m venv .venv
fi
STAMP=".venv/.shipyard-installed-$EXTRAS"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "installing shipyard[$EXTRAS] into .venv" >&2
    # (this machine's pip config names local indexes that may not exist: drop that noise)
    if ! .venv/bin/python -m pip install --quiet -e ".[$EXTRAS]" 2> >(grep -v "^WARNING: Location" >&2); then
        echo "installing shipyard[$EXTRAS] failed (see above)" >&2
        exit 2
    fi
    echo "$WANT" > "$STAMP"
fi
