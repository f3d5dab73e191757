"""PagerDuty simulator fixtures: one throwaway CA per session, a fresh simulator per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pdsim import CertFiles, PagerDutySim, make_certs


@pytest.fixture(scope="session")
def pd_certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """The CA (``.ca``, what clients trust) and the server certificate for 127.0.0.1."""
    return make_certs(tmp_path_factory.mktemp("pdsim-tls"))


@pytest.fixture
def pd_sim(pd_certs: CertFiles) -> Iterator[PagerDutySim]:
    """A started simulator with no data but one account-level token, ``pd_sim.token``.

    Exposes ``.url``, ``.ca_bundle``, ``add_user``/``add_oncall``/``add_service``/
    ``add_token``, ``fail_next``/``hang_next`` and the request log ``requests()``.
    """
    with PagerDutySim(pd_certs) as sim:
        yield sim
