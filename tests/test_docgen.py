"""Generated doc sections are current, and the generator splices without touching prose."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools import docgen

ROOT = Path(__file__).resolve().parent.parent


def test_committed_docs_are_current():
    late = docgen.stale()
    assert not late, f"stale generated sections in {late}: run python -m tools.docgen --write"


def test_the_command_line_check_agrees():
    r = subprocess.run(
        [sys.executable, "-m", "tools.docgen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def _one(render: str = "| a | b |") -> dict[str, docgen.Section]:
    return {"demo": docgen.Section("doc.md", "demo", lambda: render)}


def test_a_stale_section_is_found_and_rewritten_and_prose_kept(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Title\n\nProse before.\n\n"
        "<!-- BEGIN GENERATED: demo (old note) -->\nhand-edited, stale\n"
        "<!-- END GENERATED: demo -->\n\nProse after.\n"
    )
    sections = _one()
    assert docgen.stale(tmp_path, sections) == [doc]
    assert docgen.write(tmp_path, sections) == [doc]
    assert doc.read_text() == (
        "# Title\n\nProse before.\n\n"
        "<!-- BEGIN GENERATED: demo (python -m tools.docgen --write) -->\n\n| a | b |\n\n"
        "<!-- END GENERATED: demo -->\n\nProse after.\n"
    )
    assert docgen.stale(tmp_path, sections) == []
    assert docgen.write(tmp_path, sections) == []  # idempotent


def test_two_sections_in_one_file(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "<!-- BEGIN GENERATED: one -->\n<!-- END GENERATED: one -->\nmiddle\n"
        "<!-- BEGIN GENERATED: two -->\n<!-- END GENERATED: two -->\n"
    )
    sections = {
        "one": docgen.Section("doc.md", "one", lambda: "1"),
        "two": docgen.Section("doc.md", "two", lambda: "2"),
    }
    docgen.write(tmp_path, sections)
    text = doc.read_text()
    assert "\n\n1\n\n<!-- END GENERATED: one -->\nmiddle\n" in text
    assert "\n\n2\n\n<!-- END GENERATED: two -->\n" in text


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        "<!-- BEGIN GENERATED: demo -->\n",
        "<!-- END GENERATED: demo -->\n<!-- BEGIN GENERATED: demo -->\n",
        "<!-- BEGIN GENERATED: demo -->\n<!-- END GENERATED: demo -->\n" * 2,
    ],
)
def test_missing_or_broken_markers_say_what_to_add(tmp_path, text):
    (tmp_path / "doc.md").write_text(text)
    with pytest.raises(docgen.DocgenError, match="BEGIN GENERATED: demo"):
        docgen.stale(tmp_path, _one())


def test_a_missing_file_and_a_second_registration_are_refused(tmp_path):
    with pytest.raises(docgen.DocgenError, match="does not exist"):
        docgen.stale(tmp_path, _one())
    with pytest.raises(ValueError, match="twice"):
        docgen.generated("docs/config.md", "config-keys")(lambda: "")


def test_every_registered_section_renders_markdown():
    assert "config-keys" in docgen.SECTIONS
    for section in docgen.SECTIONS.values():
        assert section.render().strip()
