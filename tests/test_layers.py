"""What the import contract (pyproject.toml, `lint-imports`) cannot see: services and jobs reach
the templates through `bot.templates`, an attribute of the running bot, not an import. Rendering
member-facing text is for handlers and notifications (bot/notifications/notices.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BOT = Path(__file__).resolve().parents[1] / "bot"
DECIDERS = sorted([*(BOT / "services").rglob("*.py"), *(BOT / "jobs").rglob("*.py")])


def renders(path: Path) -> list[str]:
    """`x.templates` and `x.render(...)` in a module, as `file:line` strings."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("templates", "render"):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


def test_the_check_finds_a_render(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("async def f(bot):\n    return bot.templates.render('x.j2')\n")
    assert sorted(renders(module)) == ["m.py:2 .render", "m.py:2 .templates"]


@pytest.mark.parametrize("path", DECIDERS, ids=lambda p: str(p.relative_to(BOT)))
def test_services_and_jobs_render_no_templates(path):
    assert renders(path) == []
