"""Signing central audit records with an asymmetric KMS key, and checking the signatures.

With ``[audit] kms_key`` set (an ECC_NIST_P256 SIGN_VERIFY key), every record a central sink
receives is signed. The signed message is the record's hash, ``bytes.fromhex(record["hash"])``:
the hash covers every field, so the record JSON stays exactly as the contract defines it and
the signature is stored beside it (DynamoDB attributes ``sig`` and ``key_id``; S3 object
metadata ``x-amz-meta-jitctl-sig`` and ``x-amz-meta-jitctl-key-id``).

KMS is asked with ``MessageType="RAW"``: it hashes the 32 bytes with SHA-256 and signs that
(ECDSA_SHA_256). ``DIGEST`` (sign the record hash itself) would be as sound in AWS, but moto
(5.2) ignores MessageType and hashes the digest again (getmoto/moto PR #10202, open), so a
DIGEST signature would mean one thing in the tests and another in AWS; RAW means the same in
both, and any ECDSA P-256/SHA-256 verifier checks it against the 32 hash bytes.

Verification is local: the public key comes from ``kms:GetPublicKey`` once, then each record
is checked with the ``cryptography`` package, so reading the trail needs no ``kms:Verify``
(nor a KMS call per record). A signature proves a record was written by whoever may call
``kms:Sign`` on the key; that is evidence only when that is the broker's role alone.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from jitctl.errors import ConfigError

SIGNING_ALGORITHM = "ECDSA_SHA_256"
KEY_SPEC = "ECC_NIST_P256"
MESSAGE_TYPE = "RAW"  # see the module docstring
_KEY_HINT = (
    "[audit] kms_key must name an asymmetric KMS key with KeySpec ECC_NIST_P256 and "
    "KeyUsage SIGN_VERIFY (its id, ARN or alias/NAME)"
)


@dataclass(frozen=True)
class Signature:
    sig: str  # base64 of the DER-encoded ECDSA signature
    key_id: str  # the key's ARN, as KMS reports it


def message(record: dict[str, Any]) -> bytes:
    """What is signed: the record's hash as 32 bytes."""
    return bytes.fromhex(str(record["hash"]))


class Signer:
    """Signs records with ``kms:Sign``; the same record is signed once for every sink."""

    def __init__(self, key_id: str, client_factory: Any) -> None:
        self.key_id = key_id
        self._client_factory = client_factory
        self._last: tuple[str, Signature] | None = None

    def sign(self, record: dict[str, Any]) -> Signature:
        """The record's signature. Raises a JitctlError (exit 5 or 2) if KMS refuses."""
        from jitctl.aws import translate_error

        digest = str(record["hash"])
        if self._last is not None and self._last[0] == digest:
            return self._last[1]
        try:
            resp = self._client_factory("kms").sign(
                KeyId=self.key_id,
                Message=message(record),
                MessageType=MESSAGE_TYPE,
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except Exception as exc:
            raise translate_error(
                exc,
                f"cannot sign the audit record with KMS key {self.key_id}",
                hint="the writer needs kms:Sign on [audit] kms_key; " + _KEY_HINT,
            ) from exc
        signature = Signature(base64.b64encode(resp["Signature"]).decode("ascii"), resp["KeyId"])
        self._last = (digest, signature)
        return signature

    def can_sign(self) -> bool:
        """Whether the caller may sign with the key. Found by signing 32 zero bytes: no
        record's hash is that, so the signature vouches for nothing."""
        from jitctl.aws import translate_error

        try:
            self._client_factory("kms").sign(
                KeyId=self.key_id,
                Message=bytes(32),
                MessageType=MESSAGE_TYPE,
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except Exception as exc:
            from jitctl.aws import DENIED, error_code

            if error_code(exc) in DENIED:
                return False
            raise translate_error(exc, f"cannot probe KMS key {self.key_id}") from exc
        return True


class Verifier:
    """Checks signatures against the key's public key, fetched once with kms:GetPublicKey."""

    def __init__(self, key_id: str, client_factory: Any) -> None:
        self.key_id = key_id
        self._client_factory = client_factory
        self._public: Any = None
        self.key_arn = ""

    def load(self) -> None:
        """Fetch and check the public key. ConfigError for a key of the wrong kind."""
        if self._public is not None:
            return
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        from jitctl.aws import translate_error

        try:
            resp = self._client_factory("kms").get_public_key(KeyId=self.key_id)
        except Exception as exc:
            raise translate_error(
                exc,
                f"cannot read the public key of KMS key {self.key_id}",
                hint="reading the trail needs kms:GetPublicKey on [audit] kms_key",
            ) from exc
        # CustomerMasterKeySpec: the deprecated name AWS still returns (and moto only returns)
        spec = resp.get("KeySpec") or resp.get("CustomerMasterKeySpec")
        usage = resp.get("KeyUsage")
        if spec != KEY_SPEC or usage != "SIGN_VERIFY":
            raise ConfigError(f"KMS key {self.key_id} is {spec} for {usage}", _KEY_HINT)
        public = load_der_public_key(resp["PublicKey"])
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ConfigError(f"KMS key {self.key_id} has no EC public key", _KEY_HINT)
        self._public, self.key_arn = public, str(resp.get("KeyId", self.key_id))

    def problem(self, record: dict[str, Any], sig: str | None, key_id: str | None) -> str | None:
        """None when ``sig`` is this key's signature of ``record``; else what is wrong."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        self.load()
        if not sig:
            return f"no signature: not written by a holder of KMS key {self.key_arn}"
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            return "the signature is not base64: forged"
        try:
            self._public.verify(raw, message(record), ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):  # ValueError: not a DER signature at all
            by = f" (it names {key_id})" if key_id and not same_key(key_id, self.key_arn) else ""
            return f"bad signature{by}: not KMS key {self.key_arn}'s signature of this record"
        return None


def same_key(one: str, other: str) -> bool:
    """Whether two key ids name the same key: a key ARN ends in key/ID, a bare id is ID."""
    return one.rsplit("/", 1)[-1] == other.rsplit("/", 1)[-1]


def open_signer(settings: Any, client_factory: Any) -> Signer | None:
    """The Signer ``[audit] kms_key`` configures (an AuditSettings), or None."""
    return Signer(settings.kms_key, client_factory) if settings.kms_key else None


def open_verifier(settings: Any, client_factory: Any) -> Verifier | None:
    return Verifier(settings.kms_key, client_factory) if settings.kms_key else None
