"""The base role, verified by using the host: metrics served, logins refused."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from infra import Host, default_address, http_get

TEST_USER = "infratest"
# The allowed origins as unattended-upgrade computes them, from its own code.
_ALLOWED_ORIGINS = """
import importlib.machinery, importlib.util, json
import apt_pkg
loader = importlib.machinery.SourceFileLoader("uu", "/usr/bin/unattended-upgrade")
uu = importlib.util.module_from_spec(importlib.util.spec_from_loader("uu", loader))
loader.exec_module(uu)
apt_pkg.init_config()
apt_pkg.init_system()
print(json.dumps(uu.get_allowed_origins()))
"""


def test_systemd_is_healthy(host: Host) -> None:
    state = host.run("systemctl is-system-running").stdout.strip()
    failed = host.run("systemctl list-units --failed --no-legend").stdout
    assert state == "running", failed


@pytest.mark.parametrize("address", ["127.0.0.1", "default"])
def test_node_exporter_serves_real_metrics(host: Host, address: str) -> None:
    if address == "default":
        address = default_address(host)
    res = http_get(host, f"http://{address}:9100/metrics", "-f")
    assert res.rc == 0, res.stderr
    assert 'node_cpu_seconds_total{cpu="0",mode="idle"}' in res.stdout
    assert "node_systemd_unit_state" in res.stdout
    load = [ln for ln in res.stdout.splitlines() if ln.startswith("node_load1 ")]
    assert load and float(load[0].split()[1]) >= 0


def test_node_exporter_not_on_other_addresses(host: Host) -> None:
    listening = host.socket.get_listening_sockets()
    assert "tcp://0.0.0.0:9100" not in listening
    assert "tcp://:::9100" not in listening


@pytest.fixture(scope="module")
def ssh_keys(host: Host) -> str:
    """A key authorised for root and for an ordinary user, to try real logins."""
    key = "/root/.ssh/infratest"
    host.run(f"install -d -m 700 /root/.ssh && rm -f {key} {key}.pub && ssh-keygen -q -t ed25519 -N '' -f {key}")
    pub = host.check_output(f"cat {key}.pub")
    host.run(f"id {TEST_USER} || useradd -m -s /bin/bash {TEST_USER}")
    host.run(f"echo '{TEST_USER}:Sup3r-secret-pw' | chpasswd")
    for home, owner in (("/root", "root"), (f"/home/{TEST_USER}", TEST_USER)):
        host.run(
            f"install -d -m 700 -o {owner} {home}/.ssh && echo '{pub}' > {home}/.ssh/authorized_keys"
            f" && chown {owner} {home}/.ssh/authorized_keys && chmod 600 {home}/.ssh/authorized_keys"
        )
    return key


def _ssh(host: Host, key: str, user: str, *opts: str) -> tuple[int, str]:
    base = "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"
    res = host.run(f"{base} {' '.join(opts)} -i {key} {user}@127.0.0.1 true")
    return res.rc, res.stderr


def test_ssh_key_login_works_for_a_user(host: Host, ssh_keys: str) -> None:
    rc, err = _ssh(host, ssh_keys, TEST_USER)
    assert rc == 0, err


def test_ssh_refuses_root_even_with_a_valid_key(host: Host, ssh_keys: str) -> None:
    rc, err = _ssh(host, ssh_keys, "root")
    assert rc != 0
    assert "Permission denied" in err


def test_ssh_offers_no_password_authentication(host: Host, ssh_keys: str) -> None:
    rc, err = _ssh(host, ssh_keys, TEST_USER, "-o PubkeyAuthentication=no")
    assert rc != 0
    # The server lists the methods it accepts: only public keys.
    assert "Permission denied (publickey)" in err


def test_sshd_effective_settings(host: Host) -> None:
    cfg = host.check_output("sshd -T")
    assert "permitrootlogin no" in cfg
    assert "passwordauthentication no" in cfg
    assert "maxauthtries 3" in cfg


def test_time_zone_and_locale(host: Host) -> None:
    assert host.file("/etc/localtime").linked_to.endswith("Etc/UTC")
    assert "LANG=en_US.UTF-8" in host.file("/etc/default/locale").content_string
    assert "en_US.utf8" in host.check_output("locale -a")
    assert host.service("systemd-timesyncd").is_enabled


def test_sysctl_baseline_written(host: Host) -> None:
    conf = host.file("/etc/sysctl.d/60-aiinfra-base.conf").content_string
    assert "net.core.somaxconn = 4096" in conf
    assert "net.ipv4.tcp_syncookies = 1" in conf


def test_unattended_security_upgrades_on(host: Host) -> None:
    dump = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert "Debian-Security" in dump
    # unattended-upgrade's own code reads the configuration (what its --dry-run prints
    # first, at 0.2 s instead of the dry run's ~25 s of CPU computing an upgrade)...
    origins = json.loads(host.check_output(f"python3 -c {shlex.quote(_ALLOWED_ORIGINS)}"))
    codename = host.system_info.codename
    security = f"origin=Debian,codename={codename}-security,label=Debian-Security"
    assert security in origins, origins
    # ...and the host's package lists have that origin to take upgrades from.
    policy = host.check_output("apt-cache policy")
    assert re.search(rf"o=Debian,a=[^,]*,n={codename}-security,l=Debian-Security,", policy), policy
