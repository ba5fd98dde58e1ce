"""What a command says when the install lacks its optional part (the extras in pyproject.toml).

The base package is the client; `torch`, `compose` and `server` add the rest. A command of a
missing part would otherwise end in a traceback about a module the user never heard of.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer


@contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Turn an ImportError inside the block (or the decorated command) into one line that names
    the extra to install, and exit status 1."""
    try:
        yield
    except ImportError as exc:
        typer.echo(
            f"error: this command needs the {extra!r} extra: pip install "
            f"'compeft-hub[{extra}]' ({exc})",
            err=True,
        )
        raise typer.Exit(1) from exc
