"""The command line's contract: help, version, exit codes, one-line errors, JSON on stdout only."""

import json
import logging

import pytest

from cozyops import __version__, cli, paths
from cozyops.errors import ConfigError, UnsafePlanError
from cozyops.lab.lab import Lab
from tests.conftest import new_lab_id


def run(capsys, *argv):
    with pytest.raises(SystemExit) as done:
        cli.main(list(argv))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"cozyops {__version__}\n")


def test_help_explains_and_lists_lab(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "Cozy" in out and "lab" in out and "--debug" in out


def test_no_command_shows_help(capsys):
    code, out, err = run(capsys)
    assert code in (0, 2)
    assert "Usage" in out + err


def test_usage_error_exits_2_without_traceback(capsys):
    code, _, err = run(capsys, "lab", "up", "--no-such-option")
    assert code == 2
    assert "Traceback" not in err


def test_known_error_is_one_line_naming_the_object(capsys):
    code, out, err = run(capsys, "lab", "status", "--id", "Not_Valid")
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cozyops: error: lab id 'Not_Valid': ")


def test_unsafe_plan_exits_2(capsys, monkeypatch):
    def refuse(*_, **__):
        raise UnsafePlanError("plan for fleet lab", "deletes 12 of 20 records", "use --force")

    monkeypatch.setattr(Lab, "open", refuse)
    code, _, err = run(capsys, "lab", "status")
    assert code == 2
    assert err.strip() == "cozyops: error: plan for fleet lab: deletes 12 of 20 records (use --force)"


def test_unexpected_error_says_where_the_traceback_is(capsys, monkeypatch):
    def crash(*_, **__):
        raise RuntimeError("boom")

    monkeypatch.setattr(Lab, "open", crash)
    code, _, err = run(capsys, "lab", "status")
    assert code == 1
    assert "unexpected error: RuntimeError: boom" in err
    assert str(paths.log_file()) in err
    assert "Traceback" not in err
    logging.getLogger("cozyops").handlers[0].flush()
    assert "Traceback" in paths.log_file().read_text()


def test_debug_shows_the_traceback(capsys, monkeypatch):
    def crash(*_, **__):
        raise ConfigError("x", "y")

    monkeypatch.setattr(Lab, "open", crash)
    code, _, err = run(capsys, "--debug", "lab", "status")
    assert code == 1
    assert "Traceback" in err and "cozyops: error: x: y" in err


def test_json_output_is_only_json(capsys, tmp_path):
    # A lab that was never brought up: the status is still a report, in JSON on stdout. Its own id,
    # so that a user's lab up on the machine (the default id) does not answer instead.
    code, out, _ = run(capsys, "lab", "status", "--id", new_lab_id("never"), "--dir", str(tmp_path / "never"),
                       "--json")
    report = json.loads(out)
    assert code == 1
    assert report["up"] is False and report["ok"] is False
    for key in ("id", "dir", "zone", "zones", "dns", "acme", "hosts", "fleet", "ssh_config", "namespaces", "pids"):
        assert key in report
    assert report["dns"]["servers"][0]["reason"] == "lab is down"


def test_env_prints_shell_exports(capsys, tmp_path):
    code, out, _ = run(capsys, "lab", "env", "--id", "demo", "--dir", str(tmp_path / "with space"))
    assert code == 0
    assert f"export COZYOPS_LAB_DIR='{tmp_path / 'with space'}'" in out.splitlines()
    assert "export COZYOPS_LAB_ID=demo" in out.splitlines()
    assert all(line.startswith("export COZYOPS_") for line in out.splitlines())


@pytest.mark.parametrize("argv", [["lab", "up"], ["lab", "down"], ["lab", "exec", "--", "true"]])
def test_root_is_required_and_said_clearly(capsys, monkeypatch, tmp_path, argv):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, _, err = run(capsys, *argv[:2], "--dir", str(tmp_path / "lab"), *argv[2:])
    assert code == 1
    assert "needs root" in err and "sudo" in err


def test_missing_packages_are_named_with_the_setup_command(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("cozyops.lab.setup.which", lambda program: None if program in ("knotd", "pebble") else "/bin/x")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    code, _, err = run(capsys, "lab", "up", "--dir", str(tmp_path / "lab"))
    assert code == 1
    assert "missing Debian packages knot, pebble" in err
    assert "cozyops lab setup" in err
