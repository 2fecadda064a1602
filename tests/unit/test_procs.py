import dataclasses
import subprocess
import time

from cozyops.lab import procs


def test_spawn_records_identity_and_stop_ends_the_process(tmp_path):
    proc, popen = procs.spawn("sleeper", ["sleep", "60"], tmp_path / "sleep.log")
    assert proc.pid == popen.pid
    assert procs.alive(proc)
    procs.stop(proc)
    assert not procs.alive(proc)
    # stop() reaped its child: nothing is left, not even a zombie.
    assert procs.stat(proc.pid) is None


def test_stop_kills_a_process_that_ignores_term(tmp_path):
    proc, _ = procs.spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 60"], tmp_path / "s.log")
    time.sleep(0.1)
    started = time.monotonic()
    procs.stop(proc, grace=0.3)
    assert not procs.alive(proc)
    assert time.monotonic() - started < 5


def test_a_reused_pid_is_never_signalled(tmp_path):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        # A record with the victim's PID but another start time: another process, long gone.
        record = procs.Proc("old", victim.pid, procs.start_time(victim.pid) - 1, ("sleep",), "")
        assert not procs.alive(record)
        procs.stop(record)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_output_goes_to_the_log(tmp_path):
    log = tmp_path / "echo.log"
    proc, popen = procs.spawn("echo", ["sh", "-c", "echo one; echo two >&2"], log)
    popen.wait()
    assert log.read_text().split() == ["one", "two"]
    assert procs.tail(log, 1) == "two"


def test_proc_json_round_trip():
    proc = procs.Proc("named", 12, 34, ("named", "-g"), "/x/named.log")
    assert procs.Proc.from_json(proc.to_json()) == proc
    assert dataclasses.asdict(proc)["argv"] == ("named", "-g")
