"""Where a host assembles a run: the parts of an ``Environment`` that sit above it.

``Environment`` (jitctl.context) is a holder every layer reads; the service a command talks to
(a broker's, or the core in this process) is built from layers that themselves read the
``Environment``. The hosts (``jitctl.cli.main``, ``jitctl.broker.aws_lambda``) and the tests
hand ``choose_service`` in, so no package imports upward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.lifecycle.contract import AccessService


def choose_service(env: Environment) -> AccessService:
    """A broker's, when ``[broker] url`` is set; else the core, run here."""
    if env.config.broker.client:
        from jitctl.broker.client import BrokerService

        return BrokerService(env)
    from jitctl.lifecycle.service import LocalService

    return LocalService(env)
