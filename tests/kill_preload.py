"""Imported once by the kill test's forkserver, before it forks the runs: jitctl's modules,
and one botocore data loader with the STS, IAM and endpoint models already parsed, shared by
every session a run makes (botocore otherwise parses the same JSON again in every process).
Only the cost of a run changes: botocore reads the same files."""

from __future__ import annotations

import botocore.loaders
import botocore.session

import jitctl.audit.log
import jitctl.cli.main
import jitctl.cli.request_cmd
import jitctl.credentials.profiles
import jitctl.lifecycle.flow
import jitctl.lifecycle.reissue
import jitctl.lifecycle.service
import jitctl.store.sqlite  # noqa: F401

_LOADER = botocore.loaders.create_loader()
for _service in ("sts", "iam"):
    _LOADER.load_service_model(_service, "service-2")
    _LOADER.load_service_model(_service, "endpoint-rule-set-1")
_LOADER.load_data("endpoints")
_LOADER.load_data("partitions")
_LOADER.load_data("sdk-default-configuration")
botocore.session.create_loader = lambda *_args, **_kw: _LOADER
