"""Subcommands of the `siesta` CLI, one module each."""
