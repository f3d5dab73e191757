"""The life of an access request: submit, decide, wait, issue, extend, sweep."""
