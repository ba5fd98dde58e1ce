"""How pages are answered: one Jinja2 environment, security headers, HTML error pages.

Autoescaping is on for every template, so whatever a user uploaded (descriptions, sample inputs,
tags, names) reaches the browser as text. Model cards are Markdown, rendered with raw HTML
escaped too (markdown-it with `html` off, whose links refuse javascript: and data: URLs). The Content-Security-Policy allows this site's own
stylesheet and script only: no inline script could run even if something slipped through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt
from markupsafe import Markup

from registry.api.http_errors import STATUS_BY_FAMILY, ErrorAnswer, error_answer
from registry.services.model_cards import split_front_matter

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
MAPPED_FAILURES = tuple(STATUS_BY_FAMILY)
# Headings for the usual statuses; the others show the standard reason phrase.
PAGE_TITLES = {
    400: "Bad request",
    404: "Not found",
    410: "Deleted",
    422: "Invalid request",
    503: "Temporarily unavailable",
}

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


CARD_HEADING_SHIFT = 2  # the card sits under the page's h1 and its own "Model card" h2


def markdown(text: str) -> Markup:
    """A model card as HTML: its YAML front matter left out (the page shows license and data
    sets itself), HTML comments dropped (peft's card template is full of them; a browser would
    not show them), any other raw HTML escaped, and its headings moved down two levels (a
    card's `# Title` is an h3 of the page, which has one h1)."""
    _, body = split_front_matter(text)
    body = _HTML_COMMENT.sub("", body)
    tokens = _MARKDOWN.parse(body)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1:]) + CARD_HEADING_SHIFT, 6)}"
    return Markup(_MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {}))


_environment = Environment(
    loader=PackageLoader("registry.api.web"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["markdown"] = markdown
templates = Jinja2Templates(env=_environment)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A page from `template`, with the security headers every page carries."""
    return templates.TemplateResponse(
        request,
        template,
        dict(context),
        status_code=status,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def error_page(request: Request, answer: ErrorAnswer) -> Response:
    """The HTML twin of the API's JSON error: same status, same message, same headers."""
    return render(
        request,
        "error.html",
        {
            "status": answer.status,
            "title": PAGE_TITLES.get(answer.status, HTTPStatus(answer.status).phrase),
            "detail": answer.detail,
        },
        status=answer.status,
        headers=answer.headers,
    )


class ExpertGone(Exception):
    """The expert a page asked for existed and was deleted; answered 410 with the message."""


class HTMLErrorRoute(APIRoute):
    """A page route whose failures answer an HTML error page instead of the API's JSON body.

    Failures raised while resolving dependencies (a malformed id, a bad query parameter) are
    caught too, because they happen inside the route's handler.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle_with_error_pages(request: Request) -> Response:
            try:
                return await handler(request)
            except ExpertGone as exc:
                return error_page(request, ErrorAnswer(HTTPStatus.GONE.value, str(exc), {}))
            except MAPPED_FAILURES as exc:
                return error_page(request, error_answer(request, exc))

        return handle_with_error_pages
