"""Every command is documented for its users (README or docs/), and the docs link what exists."""
import re
from pathlib import Path

import click

from fallbackkit.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}"


def test_every_command_is_documented():
    text = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [c for c in commands(cli) if f"fallbackkit {c}" not in text and f"`{c}" not in text]
    assert missing == []


def test_doc_links_point_at_files():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            if target.startswith("../shared"):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_template_example_in_the_guide_loads(tmp_path):
    from fallbackkit.templates.model import load_template
    text = (ROOT / "docs" / "templates.md").read_text()
    example = re.search(r"```yaml\n(name: fluid-balance.*?)```", text, re.S).group(1)
    (tmp_path / "fluid-balance.yaml").write_text(example)
    t = load_template(tmp_path / "fluid-balance.yaml")
    assert [r.each for r in t.reentry] == ["column"] and t.spec("oral_ml").range == (0.0, 3000.0)
