"""The click command class every imgtool command uses (the main CLI's and `imgtool beam`'s):
environment settings are checked once the arguments are parsed and before any work, so
`--help` still works with a bad variable. Imports click and settings only."""

from __future__ import annotations

from typing import Any

import click

from imgtool import settings


class Command(click.Command):
    """Checks the IMGTOOL_* settings before the command runs (exit 2 naming a bad one)."""

    def invoke(self, ctx: click.Context) -> Any:
        settings.current()
        return super().invoke(ctx)
