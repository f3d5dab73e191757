"""The access policy as code: loading, strict checking, roles and `policy explain`."""
