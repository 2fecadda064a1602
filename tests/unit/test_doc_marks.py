"""Every shell block of the README and docs/ says whether the suite runs it, and why not."""

from tests import docblocks


def test_every_shell_block_is_marked_run_or_skip_with_a_reason():
    unmarked = [block.where for block in docblocks.all_blocks() if block.mark is None]
    assert unmarked == [], "add <!-- doc-test: run --> or <!-- doc-test: skip: REASON --> before each"
    assert all(block.reason for block in docblocks.all_blocks() if block.mark == "skip")


def test_the_readme_runs_blocks_and_stays_short():
    readme = docblocks.ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 300
    assert any(block.mark == "run" for block in docblocks.blocks(readme))


def test_marks_are_read_as_written(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("<!-- doc-test: run -->\n```sh\necho a\n```\n\n<!-- doc-test: skip: needs a registrar -->\n\n"
                   "```bash\necho b\n```\n```sh\necho c\n```\n```yaml\nkey: 1\n```\n")
    found = [(b.line, b.mark, b.reason, b.body) for b in docblocks.blocks(doc, root=tmp_path)]
    assert found == [(2, "run", "", "echo a\n"), (8, "skip", "needs a registrar", "echo b\n"),
                     (11, None, "", "echo c\n")]
