#!/usr/bin/env bash
# Install the Debian packages fastreg needs, only those missing. Usage: system-deps.sh run|test|bench
# Uses sudo when not root. Safe to run again.
set -euo pipefail
want=(python3 python3-venv python3-pip)
if [ "${1:-run}" = "test" ]; then
  want+=(skopeo docker-registry redis-server nginx)  # nginx: deploy/scale and its test
  # a one-node OpenStack Swift for the swift driver tests; memcached keeps TempAuth's tokens
  want+=(swift swift-proxy swift-object swift-container swift-account memcached)
  # Azurite (the azure driver tests) is an npm package: Node.js and npm, unless already there
  command -v node >/dev/null || want+=(nodejs)
  command -v npm >/dev/null || want+=(npm)
  # the container clients pulling through the mirror (tests/integration/test_proxy_clients.py)
  want+=(docker.io containerd podman)
fi
if [ "${1:-run}" = "bench" ]; then
  # `make bench`: the server compared against, the load tools, nginx as the sendfile reference
  # and redis-server, the caches of the S3 runs
  want+=(docker-registry wrk apache2-utils nginx redis-server)
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
# Debian's nginx starts its own on :80: stop it when this run installed it (the bench starts its own).
if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
fi
# Debian's swift and memcached packages enable system services (swift's fail without rings in
# /etc/swift); the tests start their own on ephemeral ports: stop those this run installed.
for svc in swift-proxy swift-account swift-container swift-object memcached; do
  if [[ " ${missing[*]} " == *" $svc "* ]] && command -v systemctl >/dev/null && systemctl is-enabled --quiet "$svc" 2>/dev/null; then
    $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
# Debian's docker.io and containerd packages enable system services; the tests start private
# ones (own sockets and directories), so a running system instance is left alone, not stopped.
# Debian's redis-server package starts a system instance; the tests start their own on ephemeral
# ports and do not need it.
