#!/usr/bin/env bash
# Start the scale-out set-up on 127.0.0.1: SeaweedFS, Redis, 3 fastreg backends, nginx in front.
# Usage: deploy/scale/start.sh WORKDIR [--port 5000] [--backends 3] [--workers 2]
#                               [--storage s3|filesystem]
# Prints the registry URL as its last line; deploy/scale/stop.sh WORKDIR stops everything.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${FASTREG_PYTHON:-$here/../../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/cluster.py" start "$@"
