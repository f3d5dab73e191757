"""Who the caller is: the one rule (ARN -> person) and IAM's record of a session's role."""
