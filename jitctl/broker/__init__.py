"""The broker: jitctl as a gate that requesters cannot skip (see ARCHITECTURE.md)."""
