"""The thin CLI: parse options, call one core function, render. Only this package imports typer/rich."""
