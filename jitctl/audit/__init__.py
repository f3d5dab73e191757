"""The audit trail: the local hash-chained log, the central signed copy, and reading them."""
