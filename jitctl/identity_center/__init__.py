"""IAM Identity Center grants: the `identity_center` kind of role.

Such a role names a permission set and an account. Issuing assigns the permission set in that
account to the requester's Identity Store user and waits until AWS reports it done; ending
the grant deletes the assignment, unless another live grant of the same person still needs it
or it was there before jitctl looked. No credentials are handed out: the requester signs in
as they always do (`aws sso login`, the access portal).

    sso        the AWS calls: instance, user, permission set, list/create/delete, bounded waits
    grant      issuing (called by lifecycle.flow.issue) and ending (revoke, sweep)
    reconcile  sweep's reconciler and doctor's report of assignments left behind
"""
