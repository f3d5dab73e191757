"""The PagerDuty simulator now lives in the package (``jitctl demo`` uses it); re-exported here."""

from jitctl.demo.pdsim import (
    ACCOUNT_LEVEL_ME,
    DEFAULT_LIMIT,
    ERRORS,
    MAX_LIMIT,
    Answer,
    CertFiles,
    LoggedRequest,
    PagerDutySim,
    make_certs,
)

__all__ = [
    "ACCOUNT_LEVEL_ME",
    "DEFAULT_LIMIT",
    "ERRORS",
    "MAX_LIMIT",
    "Answer",
    "CertFiles",
    "LoggedRequest",
    "PagerDutySim",
    "make_certs",
]
