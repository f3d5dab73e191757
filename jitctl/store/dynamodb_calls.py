"""One DynamoDB API call of the request store, with botocore's failures turned into one line.

Conflict and Expected are for the store's own control flow (a lost optimistic write, an error
code the caller handles); everything else becomes the contract's errors: a missing table or
refused credentials are ConfigError, throttling and outages AwsUnavailable (exit 5).
boto3/botocore are imported inside functions: ``jitctl --help`` must not pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jitctl.errors import AwsUnavailable, ConfigError
from jitctl.store.base import StoreError

_UNAVAILABLE_CODES = {
    "InternalServerError",
    "ServiceUnavailable",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
}
_AUTH_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
}


class Conflict(Exception):
    """ConditionalCheckFailed: someone else wrote the item between our read and our write."""


class Expected(Exception):
    """An error code the caller said it handles (``call(allow=...)``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


MISSING_HINT = (
    "if the team's table is in another region, set [store] region (or AWS_REGION) to it; "
    "otherwise `jitctl init` creates it there"
)


def call(
    client: Callable[[], Any],
    table: str,
    op: str,
    *,
    allow: tuple[str, ...] = (),
    where: Callable[[], str] = lambda: "",
    **kwargs: Any,
) -> dict[str, Any]:
    """One API call, with botocore's failures turned into one clear line. ``client`` is called
    inside the translation: making the client can fail too (no region, no credentials).
    ``where`` says, for a missing table, where it was looked for ("in REGION (account ID)")."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
    )

    try:
        answer: dict[str, Any] = getattr(client(), op)(**kwargs)
        return answer
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code == "ConditionalCheckFailedException":
            raise Conflict() from exc
        if code in allow:
            raise Expected(code, message) from exc
        if code == "ResourceNotFoundException":
            place = where()
            raise ConfigError(
                f"DynamoDB table {table} does not exist" + (f" {place}" if place else ""),
                MISSING_HINT,
            ) from exc
        if code in _AUTH_CODES:
            raise ConfigError(
                f"AWS refused DynamoDB {op} on table {table}: {code}: {message}",
                "check the AWS credentials and their IAM permissions",
            ) from exc
        if code in _UNAVAILABLE_CODES or _server_error(exc):
            raise AwsUnavailable(f"DynamoDB is unavailable ({code}): {message}") from exc
        raise StoreError(f"DynamoDB {op} on table {table} failed: {code}: {message}") from exc
    except NoCredentialsError as exc:
        raise ConfigError(
            "no AWS credentials found", "set AWS_PROFILE or AWS_ACCESS_KEY_ID and friends"
        ) from exc
    except NoRegionError as exc:
        raise ConfigError(
            "no AWS region for DynamoDB", "set [store] region in the config or AWS_REGION"
        ) from exc
    except BotoCoreError as exc:
        # EndpointConnectionError, timeouts, closed connections: AWS cannot be reached.
        raise AwsUnavailable(f"cannot reach DynamoDB: {exc}") from exc


def _server_error(exc: Any) -> bool:
    """An HTTP 5xx: DynamoDB (or whatever answers for it) failed, whatever code it gave."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return isinstance(status, int) and status >= 500
