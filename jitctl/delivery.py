"""Handing issued credentials over on the caller's machine: the shared credentials file and
the cache ``jitctl credential-process`` serves. The same in direct and broker mode."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jitctl.context import Environment
    from jitctl.service import Issued


def deliver(
    env: Environment, issued: Issued, *, profile: str | None, write_profile: bool, cache: bool
) -> str | None:
    """Write the credentials where asked; returns the profile name written, if any.

    ``write_profile`` puts them in the shared credentials file; ``cache`` keeps them for
    `jitctl credential-process` (keyring or a 0600 file). `jitctl exec` does neither."""
    from jitctl import credentials

    req = issued.request
    written = None
    if write_profile:
        written = profile or f"jit-{req.role}"
        path = credentials.shared_credentials_path(env.environ)
        credentials.write_profile(
            path, written, issued.credentials, extra={"x_jitctl_request_id": req.request_id}
        )
    if cache:
        from jitctl.cache import CredentialCache

        CredentialCache().store(req.role, issued.credentials, req.request_id, person=req.requester)
    return written
