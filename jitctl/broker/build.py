"""Assembling a broker from the config: its proof settings, its nonce store, its handler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitctl.errors import ConfigError

if TYPE_CHECKING:
    from jitctl.broker.handler import Broker
    from jitctl.broker.nonces import NonceStore
    from jitctl.context import Environment


def build_broker(env: Environment) -> Broker:
    """The broker for ``env`` (the broker's own config, credentials and clock)."""
    from jitctl.broker.handler import Broker
    from jitctl.broker.proof import ProofSettings

    settings = env.config.broker
    if settings.client:
        raise ConfigError(
            "[broker] url is set: this config is a client's, not the broker's",
            "the broker's own config sets server_id (and sts_endpoint), not url",
        )
    if not settings.server_id:
        raise ConfigError(
            "the broker needs [broker] server_id", 'set server_id = "a-name-clients-also-set"'
        )
    proof = ProofSettings(
        server_id=settings.server_id,
        sts_endpoint=settings.sts_endpoint,
        sts_region=settings.sts_region,
    )
    trust_audit_indexes(env)
    return Broker(env, proof=proof, nonces=open_nonces(env))


def trust_audit_indexes(env: Environment) -> None:
    """The broker reads its audit table through the indexes: only its role writes the table
    (deploy/broker.yaml), so the items' index attributes are the ones it wrote."""
    for sink in getattr(env.audit, "sinks", []):
        sink.trust_index = True


def open_nonces(env: Environment) -> NonceStore:
    """DynamoDB when [broker] nonce_table is set (Lambda, several instances), else SQLite.

    The store judges a nonce expired by ``env.clock``, the trusted clock that also gives
    proofs their ``now`` (and so their nonces' expiry): on a host whose own clock ran an hour
    fast, a store on the local clock would forget every nonce at once and take a replay."""
    from jitctl.broker.nonces import DynamoNonces, SqliteNonces
    from jitctl.config.settings import default_data_dir

    table = env.config.broker.nonce_table
    if table:
        return DynamoNonces(table, lambda service: env.aws.client(service), clock=env.clock.now)
    return SqliteNonces(default_data_dir() / "broker-nonces.db", clock=env.clock.now)
