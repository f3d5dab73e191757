"""The broker: a server that alone assumes the elevated roles, writes the store and the audit trail."""
