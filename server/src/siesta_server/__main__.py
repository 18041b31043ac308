"""`python -m siesta_server` is `siesta-server`."""

from siesta_server.main import entrypoint

entrypoint()
