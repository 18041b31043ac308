"""The gateway (activator): an OpenAI-compatible proxy that wakes models from zero.

Pure pieces (catalog, routing, holding, demand, auth, errors) do no I/O; `kube` talks to
the API server, `proxy` to the model servers, `app` wires them into an aiohttp server.
"""
