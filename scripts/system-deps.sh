#!/usr/bin/env bash
# Install the Debian packages fastreg needs, only those missing. Usage: system-deps.sh run|test
# Uses sudo when not root. Safe to run again.
set -euo pipefail
want=(python3 python3-venv python3-pip)
if [ "${1:-run}" = "test" ]; then
  want+=(skopeo docker-registry redis-server)
fi
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "fastreg: please install: ${missing[*]}" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "fastreg: installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian's docker-registry package may start its own service on :5000; fastreg's tests start
# their own Distribution on ephemeral ports, and `make run` wants :5000 free.
if [ -x /usr/bin/docker-registry ] && command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  $sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
# Debian's redis-server package starts a system instance; the tests start their own on ephemeral
# ports and do not need it.
