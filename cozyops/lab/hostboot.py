"""Boot a lab host: new mount, UTS and PID namespaces, its own root filesystem, and its init.

Run by ``lab up`` inside the host's network namespace (``ip netns exec NS python -m
cozyops.lab.hostboot CONFIG``). Python 3.11 has no os.unshare, so the system calls go through
ctypes. The launcher unshares, forks the host's first process, and prints that process's PID (as
the machine sees it) once the host's init has been executed, then exits: the init, PID 1 of its
namespace, runs on, re-parented like any daemon.

The first process, before it executes the init:

- makes every mount private, names the host (UTS namespace);
- mounts the host's root: an overlay of the shared root filesystem (read-only lower layer) and
  the host's own upper layer, then /proc (of the new PID namespace), /sys, a small /dev (device
  nodes, its own devpts for SSH terminals, /dev/shm) and a tmpfs /run;
- pivots into that root and detaches the machine's, so nothing of the machine is visible.

All of these mounts live only in the host's mount namespace: they vanish with its last process,
so ``lab down`` has no mount to undo.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REC, MS_PRIVATE = 0x4000, 0x40000
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
INIT = "/usr/local/sbin/cozyops-lab-init"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# name: (major, minor, mode)
DEVICES = {
    "null": (1, 3, 0o666),
    "zero": (1, 5, 0o666),
    "full": (1, 7, 0o666),
    "random": (1, 8, 0o666),
    "urandom": (1, 9, 0o666),
    "tty": (5, 0, 0o666),
}
LINKS = {
    "ptmx": "pts/ptmx",
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode(), target.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {fstype or source} on {target}",
    )


def _dev(root: str) -> None:
    dev = f"{root}/dev"
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=4m")
    for name, (major, minor, mode) in DEVICES.items():
        os.mknod(f"{dev}/{name}", mode | stat.S_IFCHR, os.makedev(major, minor))
        os.chmod(f"{dev}/{name}", mode)
    for name, target in LINKS.items():
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.mkdir(f"{dev}/shm")
    mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m")


def first_process(config: dict) -> None:
    """In the new namespaces: build the host's root, pivot into it, execute its init."""
    os.setsid()
    os.umask(0o022)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    name = config["name"].encode()
    _check(_libc.sethostname(name, len(name)), "sethostname")
    root = config["root"]
    mount(
        "overlay", root, "overlay", 0,
        f"lowerdir={config['lower']},upperdir={config['upper']},workdir={config['work']}",
    )
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _dev(root)
    mount("tmpfs", f"{root}/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64m")
    os.mkdir(f"{root}/run/lock", 0o1777)
    os.chmod(f"{root}/run/lock", 0o1777)
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"pivot_root: unknown system call number on {os.uname().machine}")
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the machine's root")
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.execve(INIT, [INIT], {"PATH": PATH, "LANG": "C.UTF-8", "TERM": "linux", "HOME": "/root"})


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    log = os.open(config["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    read_end, write_end = os.pipe()  # close-on-exec: EOF once the init is executed
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.dup2(log, 1)
            os.dup2(log, 2)
            first_process(config)
        except BaseException as error:  # noqa: BLE001 - reported to the launcher, then exit
            os.write(write_end, (str(error) or type(error).__name__).encode())
        os._exit(1)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    if chunks:
        os.waitpid(pid, 0)
        print(f"host {config['name']}: {b''.join(chunks).decode(errors='replace')}", file=sys.stderr)
        return 1
    print(pid, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
