#!/usr/bin/python3
"""init of a cozyops lab host: the first process (PID 1) of the host's PID namespace.

Copied into each host as /usr/local/sbin/cozyops-lab-init and run with the host's own python3
(standard library only). It does what init does on a Debian server without systemd:

- at boot, starts the services enabled in runlevel 2 through their init scripts
  (``/etc/rc2.d/S*``), as sysvinit's rc does: sshd first of all;
- adopts and reaps every orphan, so that a process started over SSH outlives the session;
- on SIGTERM (``cozyops lab down``) or SIGINT, stops those services (their ``K`` scripts), sends
  TERM and then KILL to whatever is left, and exits. When it exits, the kernel ends every process
  of the host: killing the init ends the whole host.

It names itself ``init`` (/proc/1/comm) and records runlevel 2 in /run/utmp, like sysvinit, so
that tools that look at PID 1 (Ansible's service manager fact) or ask ``runlevel`` (invoke-rc.d,
which starts a package's service when it is installed) see a sysvinit-style system.
"""

import ctypes
import os
import signal
import struct
import subprocess
import sys
import time

PR_SET_NAME = 15
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
SCRIPT_TIMEOUT = 60
STOP_GRACE = 3.0
RUNLEVEL = "2"


def say(message):
    print(f"init: {message}", flush=True)


def record_runlevel(runlevel, previous="N"):
    """The RUN_LVL record sysvinit writes to utmp (glibc's struct utmp, 384 bytes)."""
    now = time.time()
    record = struct.pack(
        "<hxxi32s4s32s256shhiii16s20s",
        1,  # RUN_LVL
        ord(runlevel) + 256 * ord(previous),
        b"~", b"~~", b"runlevel", b"", 0, 0, 0, int(now), int(now % 1 * 1e6), b"", b"",
    )
    with open("/run/utmp", "wb") as utmp:
        utmp.write(record)


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False  # no children at all
        if pid == 0:
            return True  # children left, none ended


def rc_scripts(runlevel, prefix):
    folder = f"/etc/rc{runlevel}.d"
    try:
        entries = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [os.path.join(folder, entry) for entry in entries if entry.startswith(prefix) and len(entry) > 3]


def run_script(path, action):
    name = os.path.basename(path)[3:]
    say(f"{action} {name}")
    try:
        result = subprocess.run(
            [path, action],
            stdin=subprocess.DEVNULL,
            timeout=SCRIPT_TIMEOUT,
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, set()),
        )
        if result.returncode:
            say(f"{action} {name}: exit {result.returncode}")
    except (OSError, subprocess.SubprocessError) as error:
        say(f"{action} {name}: {error}")


def boot():
    for script in rc_scripts(RUNLEVEL, "S"):
        run_script(script, "start")
        reap()


def shutdown():
    started = {os.path.basename(path)[3:] for path in rc_scripts(RUNLEVEL, "S")}
    for script in rc_scripts("0", "K"):
        if os.path.basename(script)[3:] in started:
            run_script(script, "stop")
            reap()
    os.kill(-1, signal.SIGTERM)  # in a PID namespace: every process of the host but init
    deadline = time.monotonic() + STOP_GRACE
    while reap() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    while reap():
        time.sleep(0.01)


def main():
    ctypes.CDLL(None).prctl(PR_SET_NAME, b"init", 0, 0, 0)
    if os.getpid() != 1:
        say("not PID 1 of a PID namespace: refusing to run")
        return 1
    os.chdir("/")
    for number in SIGNALS:
        # A handler (not SIG_DFL) makes the kernel deliver the signal to a namespace's init.
        signal.signal(number, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    say(f"booting {os.uname().nodename}")
    record_runlevel(RUNLEVEL)
    boot()
    say("up")
    while True:
        info = signal.sigwaitinfo(SIGNALS)
        if info.si_signo == signal.SIGCHLD:
            reap()
        elif info.si_signo == signal.SIGHUP:
            continue
        else:
            say(f"{signal.Signals(info.si_signo).name}: stopping")
            shutdown()
            say("halted")
            return 0


if __name__ == "__main__":
    sys.exit(main())
