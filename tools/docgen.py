"""Generated sections of the docs: facts declared once in code, rendered into Markdown.

A fact the code declares (a config key, a message kind) and the docs describe drifts as
soon as it is written twice. So the docs' tables are rendered from the declarations and
spliced into the committed Markdown between two marker lines; the prose around them
stays hand-written::

    <!-- BEGIN GENERATED: config-keys (python -m tools.docgen --write) -->
    ...rendered, never edited by hand...
    <!-- END GENERATED: config-keys -->

``python -m tools.docgen --check`` exits 1 when a committed section differs from what the
code renders now (tests/test_docgen.py runs it); ``--write`` rewrites the sections.

Registering another section: a function in this file that returns the Markdown, usually
by calling the module that owns the declarations (which stays free of any import from
``tools``), decorated with the file and the section's name::

    @generated("docs/wire-format.md", "message-kinds")
    def _message_kinds() -> str:
        from edge.messages import markdown_table
        return markdown_table()

then put the two marker lines where the section belongs and run ``--write``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITE = "python -m tools.docgen --write"


class DocgenError(Exception):
    """A generated section cannot be placed: its file or its markers are missing."""


@dataclass(frozen=True)
class Section:
    """One generated section: where it goes and the function that renders it."""

    path: str  # relative to the repository root
    name: str
    render: Callable[[], str]

    @property
    def begin(self) -> str:
        return f"<!-- BEGIN GENERATED: {self.name} ({WRITE}) -->"

    @property
    def end(self) -> str:
        return f"<!-- END GENERATED: {self.name} -->"


SECTIONS: dict[str, Section] = {}


def generated(path: str, name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register ``render`` as the generator of section ``name`` in ``path``."""

    def register(render: Callable[[], str]) -> Callable[[], str]:
        if name in SECTIONS:
            raise ValueError(f"generated section {name} is registered twice")
        SECTIONS[name] = Section(path, name, render)
        return render

    return register


@generated("docs/config.md", "config-keys")
def _config_keys() -> str:
    from edge.config import markdown_tables

    return markdown_tables()


@generated("docs/wire-format.md", "message-kinds")
def _message_kinds() -> str:
    from edge.messages import markdown_table

    return markdown_table()


def splice(text: str, section: Section, body: str) -> str:
    """``text`` with the lines between ``section``'s markers replaced by ``body``. The
    begin marker may carry any note in parentheses; it is rewritten to the current one."""
    name = re.escape(section.name)
    begins = list(re.finditer(rf"^<!-- BEGIN GENERATED: {name}(?: \([^)\n]*\))? -->$", text, re.M))
    ends = list(re.finditer(rf"^<!-- END GENERATED: {name} -->$", text, re.M))
    if len(begins) != 1 or len(ends) != 1 or ends[0].start() < begins[0].end():
        raise DocgenError(
            f"{section.path}: needs exactly one pair of marker lines for {section.name}, "
            f"in this order:\n{section.begin}\n{section.end}"
        )
    b, e = begins[0], ends[0]
    return text[: b.start()] + f"{section.begin}\n\n{body.strip()}\n\n" + text[e.start() :]


def render(root: Path = ROOT, sections: dict[str, Section] | None = None) -> dict[Path, tuple]:
    """{file: (committed text, text with every section freshly rendered)}."""
    files: dict[Path, tuple] = {}
    for section in (SECTIONS if sections is None else sections).values():
        path = root / section.path
        if path not in files:
            try:
                text = path.read_text()
            except FileNotFoundError:
                raise DocgenError(f"{section.path} does not exist; create it with the "
                                  f"marker lines for {section.name}") from None  # fmt: skip
            files[path] = (text, text)
        old, new = files[path]
        files[path] = (old, splice(new, section, section.render()))
    return files


def stale(root: Path = ROOT, sections: dict[str, Section] | None = None) -> list[Path]:
    """The files whose generated sections differ from what the code renders now."""
    return [p for p, (old, new) in render(root, sections).items() if old != new]


def write(root: Path = ROOT, sections: dict[str, Section] | None = None) -> list[Path]:
    """Rewrite the generated sections; returns the files that changed."""
    changed = []
    for path, (old, new) in render(root, sections).items():
        if old != new:
            path.write_text(new)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.docgen",
        description="Check or rewrite the doc sections generated from code declarations.",
    )
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if any section is stale")
    mode.add_argument("--write", action="store_true", help="rewrite the generated sections")
    mode.add_argument("--list", action="store_true", help="list the registered sections")
    args = ap.parse_args(argv)
    if args.list:
        for s in SECTIONS.values():
            print(f"{s.path}: {s.name}")
        return 0
    try:
        if args.write:
            for path in write():
                print(f"rewrote {path.relative_to(ROOT)}")
            return 0
        late = stale()
    except DocgenError as exc:
        print(f"docgen: {exc}", file=sys.stderr)
        return 2
    for path in late:
        print(f"{path.relative_to(ROOT)}: generated section is stale; run {WRITE}", file=sys.stderr)
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
