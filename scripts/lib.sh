# shellcheck shell=bash
# Shared by scripts/lab, scripts/test and scripts/images: set up the control
# node (packages, Docker engine, apt cache, Python venv) idempotently.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO_ROOT
LAB_STATE_ROOT=${LAB_STATE_ROOT:-/var/lib/aiinfra-lab}
LAB_IMAGE_PREFIX=${LAB_IMAGE_PREFIX:-aiinfra-lab/debian}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
APT_PROXY_PORT=${APT_PROXY_PORT:-3142}
VENV=${VENV:-$REPO_ROOT/.venv}
export LAB_STATE_ROOT LAB_IMAGE_PREFIX

log() { printf '\033[1m[%s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root: the lab installs Debian packages and drives the Docker engine (try: sudo $0 $*)"
}

require_disk() {
  local free_mb
  mkdir -p "$LAB_STATE_ROOT"
  free_mb=$(df -Pm "$LAB_STATE_ROOT" | awk 'NR==2 {print $4}')
  [ "$free_mb" -ge 4096 ] || die "only ${free_mb} MiB free under $LAB_STATE_ROOT; the lab needs 4 GiB (images, apt cache, hosts)"
}

# Control-node packages from Debian, installed only when missing. prometheus
# is there for promtool (the alert rules' unit tests), chromium for the
# platform's browser check, nftables for `nft -c` on the rendered firewall
# rules (in a network namespace of their own): installs never start services
# (policy-rc.d), so no Prometheus server runs and no ruleset is loaded on the
# control node.
ensure_packages() {
  local want=(docker.io debootstrap apt-cacher-ng python3-venv openssh-client git curl prometheus chromium
    nftables) missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing control-node packages: ${missing[*]}"
  apt-get update -qq || die "apt-get update failed: is the Debian mirror reachable?"
  local policy=0 rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ $policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc -eq 0 ] || die "apt-get install ${missing[*]} failed"
}

ensure_docker() {
  docker info >/dev/null 2>&1 && return 0
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    log "starting dockerd (no systemd on this machine)"
    mkdir -p /var/log/aiinfra-lab
    nohup dockerd >/var/log/aiinfra-lab/dockerd.log 2>&1 &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "the Docker engine did not start (see /var/log/aiinfra-lab/dockerd.log)"
}

# One apt download cache for every lab and Molecule host: apt-cacher-ng on the
# Docker bridge. Containers get its address through a mounted apt.conf file.
ensure_apt_proxy() {
  local gw conf=$LAB_STATE_ROOT/acng
  # The default bridge's address (its IPAM config often leaves Gateway empty).
  gw=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1)
  [ -n "$gw" ] || die "the Docker bridge docker0 has no IPv4 address; cannot place the apt cache on it"
  mkdir -p "$conf" "$LAB_STATE_ROOT/apt-cache" /var/log/aiinfra-lab
  chown apt-cacher-ng "$LAB_STATE_ROOT/apt-cache" /var/log/aiinfra-lab 2>/dev/null || true
  cat >"$conf/acng.conf" <<CONF
CacheDir: $LAB_STATE_ROOT/apt-cache
LogDir: /var/log/aiinfra-lab
SupportDir: /usr/lib/apt-cacher-ng
Port: $APT_PROXY_PORT
BindAddress: 127.0.0.1 $gw
ExThreshold: 30
CONF
  # Retries: a mirror (or the cache fetching from it) can answer one request
  # with a 503 while several hosts download at once.
  printf 'Acquire::http::Proxy "http://%s:%s";\nAcquire::Retries "5";\n' \
    "$gw" "$APT_PROXY_PORT" >"$LAB_STATE_ROOT/apt-proxy.conf"
  if ! curl -fsS -o /dev/null "http://$gw:$APT_PROXY_PORT/acng-report.html" 2>/dev/null; then
    pkill -f "apt-cacher-ng -c $conf" 2>/dev/null || true
    /usr/sbin/apt-cacher-ng -c "$conf" ForeGround=0 PidFile="$LAB_STATE_ROOT/acng.pid"
    for _ in $(seq 20); do
      curl -fsS -o /dev/null "http://$gw:$APT_PROXY_PORT/acng-report.html" 2>/dev/null && break
      sleep 0.5
    done
  fi
  curl -fsS -o /dev/null -x "http://127.0.0.1:$APT_PROXY_PORT" "$DEBIAN_MIRROR/dists/bookworm/Release" \
    || die "the Debian mirror $DEBIAN_MIRROR is unreachable through the apt cache; the lab installs packages from it"
}

ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  log "installing control-node Python packages into $VENV"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/pip" install -q -r "$REPO_ROOT/requirements.txt" 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/ansible-playbook" --version >/dev/null || die "installing requirements.txt into $VENV failed"
  echo "$want" >"$stamp"
}

# The lab's and Molecule's playbook runs use Mitogen's strategy: one Python
# per host, kept over the SSH or docker connection, instead of a module upload
# and an interpreter start per task (`tests/bench/converge.py --compare-stock`
# measures it). LAB_MITOGEN=0 runs both with the stock strategy.
use_mitogen() {
  [ "${LAB_MITOGEN:-1}" = 1 ] || return 0
  ANSIBLE_STRATEGY_PLUGINS=$("$VENV/bin/python" -c \
    'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))')/plugins/strategy
  export ANSIBLE_STRATEGY_PLUGINS ANSIBLE_STRATEGY=mitogen_linear
}

# Everything the lab and the tests need on the control node.
bootstrap() {
  require_root "$@"
  require_disk
  ensure_packages
  ensure_docker
  # Every systemd container takes inotify instances; the default 128 runs out
  # at a few dozen hosts and new containers then exit at start.
  [ "$(sysctl -n fs.inotify.max_user_instances 2>/dev/null || echo 0)" -ge 1024 ] \
    || sysctl -qw fs.inotify.max_user_instances=1024 || log "could not raise fs.inotify.max_user_instances"
  ensure_apt_proxy
  ensure_venv
  "$REPO_ROOT/scripts/images"
  export PATH="$VENV/bin:$PATH"
  export ANSIBLE_CONFIG="$REPO_ROOT/ansible.cfg"
}
