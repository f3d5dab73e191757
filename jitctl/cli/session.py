"""The one Environment of a CLI run, built at the root (`cli.main.run`) and handed to commands."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jitctl.context import Environment


def current_env() -> Environment:
    """The Environment `run` passed to the app as click's context object."""
    from typer._click.globals import get_current_context

    env: Environment | None = get_current_context().find_root().obj
    assert env is not None, "commands run through jitctl.cli.main.run, which builds the Environment"
    return env
