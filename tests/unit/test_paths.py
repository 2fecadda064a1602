from pathlib import Path

from cozyops import paths


def test_xdg_directories(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    assert paths.state_dir() == tmp_path / "s" / "cozyops"
    assert paths.cache_dir() == tmp_path / "c" / "cozyops"
    assert paths.labs_dir() == tmp_path / "s" / "cozyops" / "labs"
    assert paths.log_file() == tmp_path / "s" / "cozyops" / "logs" / "cozyops.log"


def test_xdg_defaults_and_relative_values(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the spec: ignored
    assert paths.state_dir() == tmp_path / ".local" / "state" / "cozyops"
    assert paths.cache_dir() == tmp_path / ".cache" / "cozyops"


def test_fleet_state_lives_in_the_fleet():
    assert paths.fleet_state_dir(Path("/f")) == Path("/f/.cozyops")


def test_data_directories_are_found():
    for name in ("playbooks", "templates", "inventories"):
        assert paths.data_dir(name).is_dir()
    assert (paths.data_dir("templates") / "lab" / "named.conf.j2").is_file()


def test_private_files_are_0600_from_the_start(tmp_path):
    import os
    import stat

    from cozyops import files

    old = os.umask(0)  # even with a permissive umask
    try:
        files.write_private(tmp_path / "d" / "key", "secret")
        files.write_atomic(tmp_path / "d" / "pub", b"public")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d" / "key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d" / "pub").stat().st_mode) == 0o644
    assert (tmp_path / "d" / "key").read_text() == "secret"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["key", "pub"]  # no temporary left
