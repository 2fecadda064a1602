"""The lab's hosts, for real: SSH with verified host keys, an init that keeps services, apt via the proxy."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import paramiko
import pytest

from cozyops.lab import netns, sshkeys
from cozyops.lab.lab import Lab


def ssh(lab: Lab, host: str, command: str, config: Path | None = None, timeout: float = 180):
    """``cozyops lab exec -- ssh -F CONFIG HOST COMMAND``, as the issue's user types it."""
    config = config or lab.host_files.ssh_config
    return subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
         "ssh", "-F", str(config), host, command],
        capture_output=True, text=True, timeout=timeout,
    )


def ok(lab: Lab, host: str, command: str) -> str:
    result = ssh(lab, host, command)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


@pytest.mark.parametrize("index", [1, 2])
def test_ssh_through_lab_exec_reaches_each_host_by_name_and_fqdn(lab, index):
    host = lab.spec.host(index)
    assert ok(lab, host.name, "hostname").strip() == host.name
    assert ok(lab, host.fqdn, "cat /etc/hostname").strip() == host.name
    # Its own root filesystem: a Debian bookworm with the machine's apt sources.
    assert 'VERSION_CODENAME=bookworm' in ok(lab, host.name, "cat /etc/os-release")
    # And its name in the lab's DNS, served by both servers.
    for server in (lab.spec.bind_address, lab.spec.knot_address):
        dig = subprocess.run(lab.exec_argv(["dig", "+short", f"@{server}", host.fqdn, "A"])[0],
                             capture_output=True, text=True, timeout=30)
        assert dig.stdout.strip() == host.address


def tampered_config(lab: Lab, tmp_path: Path, known_hosts: str) -> Path:
    (tmp_path / "known_hosts").write_text(known_hosts)
    config = lab.host_files.ssh_config.read_text().replace(
        str(lab.host_files.known_hosts), str(tmp_path / "known_hosts")
    )
    (tmp_path / "config").write_text(config)
    return tmp_path / "config"


def test_a_changed_host_key_is_refused(lab, tmp_path):
    h1 = lab.spec.host(1)
    genuine = sshkeys.public_line(lab.host_files.host_key(h1))
    impostor = sshkeys.ensure_key(tmp_path / "impostor", "impostor")
    known = lab.host_files.known_hosts.read_text()
    assert genuine in known
    config = tampered_config(lab, tmp_path, known.replace(genuine, impostor))
    refused = ssh(lab, "h1", "touch /root/should-not-exist", config)
    assert refused.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    assert "Host key verification failed" in refused.stderr
    # An unknown host is refused as well (strict checking, no trust on first use).
    unknown = ssh(lab, "h1", "true", tampered_config(lab, tmp_path, ""))
    assert unknown.returncode == 255 and "Host key verification failed" in unknown.stderr
    assert ok(lab, "h1", "test -e /root/should-not-exist || echo absent").strip() == "absent"


def test_paramiko_with_the_labs_known_hosts_checks_the_key_and_only_keys_are_accepted(lab, tmp_path):
    h1 = lab.spec.host(1)
    impostor = sshkeys.ensure_key(tmp_path / "impostor", "impostor")

    def connect(known_hosts: str):
        path = tmp_path / "paramiko_known_hosts"
        path.write_text(known_hosts)
        client = paramiko.SSHClient()
        client.load_host_keys(str(path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(h1.address, username="root", key_filename=str(lab.host_files.client_key),
                           allow_agent=False, look_for_keys=False, timeout=5)
            _, out, _ = client.exec_command("hostname")
            return out.read().decode().strip()
        finally:
            client.close()

    def password_methods():
        transport = paramiko.Transport((h1.address, 22))
        try:
            transport.start_client(timeout=5)
            with pytest.raises(paramiko.BadAuthenticationType) as refused:
                transport.auth_none("root")
            return refused.value.allowed_types
        finally:
            transport.close()

    known = lab.host_files.known_hosts.read_text()
    assert netns.inside(lab.spec.netns, lambda: connect(known)) == "h1"
    genuine = sshkeys.public_line(lab.host_files.host_key(h1))
    with pytest.raises(paramiko.BadHostKeyException):
        netns.inside(lab.spec.netns, lambda: connect(known.replace(genuine, impostor)))
    assert netns.inside(lab.spec.netns, password_methods) == ["publickey"]


def test_a_process_started_over_ssh_survives_the_logout(lab):
    pid = ok(lab, "h2", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!").strip()
    # A new session sees it running, adopted by the host's init.
    assert ok(lab, "h2", f"ps -o ppid=,comm= -p {pid}").split() == ["1", "sleep"]
    assert ok(lab, "h2", "cat /proc/1/comm").strip() == "init"
    ok(lab, "h2", f"kill {pid}")


def machine_packages() -> str:
    return hashlib.sha256(Path("/var/lib/dpkg/status").read_bytes()).hexdigest()


def test_apt_installs_in_a_host_through_the_proxy_and_leaves_the_machine_alone(lab):
    if subprocess.run(["dpkg-query", "-W", "hello"], capture_output=True).returncode == 0:
        pytest.skip("the machine itself has hello installed")
    before = machine_packages()
    output = ok(lab, "h1", "apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get install -y -q hello && hello")
    assert "Hello, world!" in output
    assert machine_packages() == before
    assert subprocess.run(["dpkg-query", "-W", "hello"], capture_output=True).returncode != 0
    assert not Path("/usr/bin/hello").exists()
    # The package landed in h1's own layer, not in the shared root filesystem nor in h2.
    h1 = lab.spec.host(1)
    assert (lab.host_files.dir(h1) / "upper" / "usr" / "bin" / "hello").exists()
    assert not (Path(lab.state().rootfs) / "usr" / "bin" / "hello").exists()
    assert ssh(lab, "h2", "command -v hello").returncode != 0
    proxy_log = (lab.logs / "apt-proxy.log").read_text()
    assert f"{h1.address} GET http://" in proxy_log and "/hello_" in proxy_log


PROXY_PROBE = textwrap.dedent("""\
    import http.client, sys
    def ask(method, target):
        connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
        connection.request(method, target, headers={"Host": target.split("/")[2] if "//" in target else target})
        return connection.getresponse().status
    print(ask("GET", "http://example.org/"), ask("CONNECT", "example.org:443"), ask("POST", "http://deb.debian.org/"))
""")


def test_the_proxy_serves_only_the_machines_mirrors(lab):
    gateway = lab.spec.gateway
    script = PROXY_PROBE.replace("'", "'\\''")
    statuses = ok(lab, "h1", f"python3 -c '{script}' {gateway} 3142").split()
    assert statuses == ["403", "403", "405"]
    # No route out of the lab: only the lab's own subnet is reachable.
    routes = ok(lab, "h1", "ip -4 route show")
    assert "default" not in routes and str(lab.spec.subnet) in routes


ANSIBLE_FACTS = textwrap.dedent("""\
    import json, os, sys, ansible_runner
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    work, inventory = sys.argv[1], sys.argv[2]
    env = {"ANSIBLE_HOME": work + "/home", "ANSIBLE_LOCAL_TEMP": work + "/home/tmp", "ANSIBLE_NOCOLOR": "1"}
    facts = {}
    modules = (("ansible.builtin.setup", "filter=ansible_service_mgr"), ("ansible.builtin.service_facts", ""))
    for module, args in modules:
        run = ansible_runner.run(private_data_dir=work, inventory=inventory, host_pattern="h1", module=module,
                                 module_args=args, envvars=env, suppress_env_files=True, quiet=True)
        assert run.rc == 0, run.stdout.read()
        for event in run.events:
            if event["event"] == "runner_on_ok":
                facts.update(event["event_data"]["res"]["ansible_facts"])
    print(json.dumps(facts))
""")


def test_services_run_through_their_init_scripts_and_ansible_sees_them(lab, tmp_path):
    # Installing nginx starts it through its init script (invoke-rc.d), as on a Debian server.
    ok(lab, "h1", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx")
    assert "nginx is running" in ok(lab, "h1", "service nginx status")
    # A site of the test's own (the host may have been provisioned by an earlier test, which
    # replaces nginx's default site), served after a reload through the init script.
    ok(lab, "h1", "printf 'server { listen 127.0.0.1:8089; location / { return 200 \"served by h1\"; } }\\n' "
                  "> /etc/nginx/conf.d/zz-test-hosts.conf")
    try:
        ok(lab, "h1", "service nginx reload")
        page = ok(lab, "h1", "python3 -c 'import time, urllib.request\n"
                             "for _ in range(50):\n"
                             "    try: print(urllib.request.urlopen(\"http://127.0.0.1:8089/\").read()); break\n"
                             "    except OSError: time.sleep(0.1)'")
        assert "served by h1" in page
    finally:
        ok(lab, "h1", "rm -f /etc/nginx/conf.d/zz-test-hosts.conf && service nginx reload")
    work = tmp_path / "runner"
    work.mkdir()
    (work / "facts.py").write_text(ANSIBLE_FACTS)
    argv, env = lab.exec_argv([sys.executable, str(work / "facts.py"), str(work), str(lab.fleet_dir / "hosts.yml")])
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr + result.stdout
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["ansible_service_mgr"] == "sysvinit"
    assert facts["services"]["nginx"]["state"] == "running"
    assert facts["services"]["ssh"]["state"] == "running"
    ok(lab, "h1", "service nginx stop")
    assert ssh(lab, "h1", "service nginx status").returncode != 0
