"""Member-facing words: Jinja2 templates in templates/messages/, so a shop can change its voice
without touching code. A shop can put its own versions in an override folder."""

from __future__ import annotations

from pathlib import Path

import jinja2

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "templates" / "messages"


class Templates:
    def __init__(self, globals_: dict, override_dir: Path | None = None):
        folders = [str(override_dir)] if override_dir else []
        folders.append(str(DEFAULT_DIR))
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            autoescape=False,  # plain chat text, not HTML
            undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly in tests
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,  # templates are read once per process, not stat()ed per reply
        )
        self._env.globals.update(globals_)

    def exists(self, template: str) -> bool:
        try:
            self._env.get_template(template)
        except jinja2.TemplateNotFound:
            return False
        return True

    def render(self, template: str, /, **values) -> str:
        return self._env.get_template(template).render(**values).strip()
