"""What the HTTP side knows about the server: its phase, the engine, in-flight requests."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

from siesta_server.auth import ApiKeys
from siesta_server.chat import ChatTemplate
from siesta_server.config import ServerConfig
from siesta_server.engine import Engine
from siesta_server.errors import unavailable
from siesta_server.metrics import ServerMetrics
from siesta_server.native import Adapter, Model


class Phase(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


@dataclass
class Loaded:
    model: Model
    engine: Engine
    chat_template: ChatTemplate
    adapters: dict[str, Adapter] = field(default_factory=dict)  # by served model name


@dataclass
class ServerState:
    config: ServerConfig
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    phase: Phase = Phase.LOADING
    loaded: Loaded | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    in_flight: int = 0
    api_keys: ApiKeys | None = None
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()
        if self.config.api_key_file is not None and self.api_keys is None:
            self.api_keys = ApiKeys(self.config.api_key_file)

    def ready(self, loaded: Loaded) -> None:
        self.loaded = loaded
        if self.phase is Phase.LOADING:
            self.phase = Phase.READY
            self.metrics.ready.set(1)

    def start_draining(self) -> None:
        self.phase = Phase.DRAINING
        self.metrics.ready.set(0)

    def require_ready(self) -> Loaded:
        """The loaded model, or a 503 the client (or gateway) can retry elsewhere."""
        if self.phase is Phase.READY and self.loaded is not None:
            return self.loaded
        if self.phase is Phase.DRAINING:
            raise unavailable("Server is shutting down", retry_after=5)
        raise unavailable("Loading model", retry_after=5)

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()
