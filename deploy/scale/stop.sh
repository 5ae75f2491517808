#!/usr/bin/env bash
# Stop what deploy/scale/start.sh WORKDIR started (nginx, the backends, Redis, SeaweedFS).
# Usage: deploy/scale/stop.sh WORKDIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${FASTREG_PYTHON:-$here/../../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/cluster.py" stop "$@"
