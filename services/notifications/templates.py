"""The message templates: one Jinja2 file per event type, checked at start-up.

Each is rendered once against an example of its event when the service starts, with
undefined names an error, so a missing, broken or mistyped template stops the start instead
of failing a participant's message later.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from services.notifications.domain import example, split_message
from shared.contracts import Event

TEMPLATE_DIR = Path(__file__).with_name("templates")


class TemplateProblem(Exception):
    """One or more templates are missing or do not render."""


class Templates:
    def __init__(self, events: Sequence[type[Event]], directory: Path = TEMPLATE_DIR) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text messages, not HTML
            keep_trailing_newline=False,
        )
        self.templates: dict[str, jinja2.Template] = {}
        problems = []
        for event in events:
            try:
                template = self.env.get_template(f"{event.name}.j2")
                subject, body = split_message(template.render(nama="Siti", event=example(event)))
                if not subject or not body:
                    raise TemplateProblem("needs 'Subjek: ...' on its first line, then a body")
                self.templates[event.name] = template
            except (jinja2.TemplateError, TemplateProblem, TypeError, ValueError) as exc:
                problems.append(f"{event.name}.j2: {type(exc).__name__}: {exc}")
        if problems:
            raise TemplateProblem("; ".join(problems))

    def render(self, name: str, display_name: str, event: dict[str, Any]) -> tuple[str, str]:
        """(subject, body) of the message telling ``display_name`` about ``event``."""
        return split_message(self.templates[name].render(nama=display_name, event=event))
