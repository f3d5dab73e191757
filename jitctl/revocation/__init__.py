"""Cutting live grants off in AWS: the deny policy and `jitctl revoke`."""
