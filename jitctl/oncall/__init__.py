"""PagerDuty: who is on call, incidents and pages; one client and session per command."""
