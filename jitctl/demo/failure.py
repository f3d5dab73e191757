"""How a demo step says it did not go as the story expects (shared by every chapter)."""


class StepFailed(Exception):
    """A step did not behave as the story expects; the message says how."""
