"""The Jinja2 environment of every page: autoescape on for all templates (a peer's string is
text, never markup), and the helpers templates call.

    render(request, "findings.html", rows=rows)   # a TemplateResponse
In a template: `{{ csrf_field() }}` inside every form that POSTs; `user` is the logged-in user
or None; `fmt_time(moment)`, `fmt_count(n)`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context
from markupsafe import Markup, escape

from pacswatch.web.auth import CSRF_FIELD, csrf_token, optional_user

TEMPLATES = Path(__file__).with_name("templates")


@pass_context
def csrf_field(context: Any) -> Markup:
    token = csrf_token(context["request"])
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))


@pass_context
def csrf_value(context: Any) -> str:
    return csrf_token(context["request"])


def fmt_time(moment: datetime | None) -> str:
    if moment is None:
        return "–"
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def fmt_date(moment: datetime | None) -> str:
    return "–" if moment is None else moment.strftime("%Y-%m-%d")


def fmt_count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(csrf_field=csrf_field, csrf_value=csrf_value)
    env.filters.update(time=fmt_time, date=fmt_date, count=fmt_count)
    return env


templates = Jinja2Templates(env=_environment())


def render(request: Request, name: str, status_code: int = 200, **context: Any):
    """The page `name` with `context`, the request and the logged-in user."""
    context.setdefault("user", optional_user(request))
    return templates.TemplateResponse(request, name, context, status_code=status_code)
