"""Issued credentials on the caller's machine: profiles, formats, cache, exec, console."""
