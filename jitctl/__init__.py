"""jitctl: just-in-time AWS access, fast-tracked for whoever is on call."""

__version__ = "0.1.0"
