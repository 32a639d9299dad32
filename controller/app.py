"""The Controller: builds the backend, the whisper renderer, the live calls'
outbound HTTP client and the call service from the config at start-up, and
takes them down in order."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from controller.backends.asterisk.backend import AsteriskBackend
from controller.backends.base import Backend
from controller.calls.groups import GroupRegistry
from controller.calls.runner import CallListener
from controller.calls.service import CallService
from controller.compliance.book import ComplianceBook
from controller.config import Config
from controller.outbound_client import live_calls_client
from controller.routing.agents import AgentBook
from controller.tts import WhisperRenderer


def make_backend(config: Config) -> Backend:
    if config.backend == "freeswitch":
        # Imported only when chosen: it brings gevent, which stays inside it.
        from controller.backends.freeswitch.backend import FreeswitchBackend

        return FreeswitchBackend(config.freeswitch)
    return AsteriskBackend(config.asterisk, lab=config.is_lab)


class Controller:
    def __init__(self, config: Config, listener: CallListener,
                 agents: AgentBook | None = None, records: ComplianceBook | None = None,
                 groups: GroupRegistry | None = None) -> None:
        self.config = config
        self.backend = make_backend(config)
        whisper = config.whisper
        self.renderer = WhisperRenderer(
            Path(config.media.whisper_dir), whisper.voice, whisper.rate, whisper.max_seconds,
            max_concurrent_renders=whisper.max_concurrent_renders,
            render_wait_seconds=whisper.render_wait_seconds,
            cache_max_age_days=whisper.cache_max_age_days, cache_max_mb=whisper.cache_max_mb)
        # One for the controller's life: each dial-whom or action URL request
        # reuses its TLS context and kept-alive connections.
        self.outbound = live_calls_client(config.outbound)
        self.calls = CallService(config, self.backend, self.renderer, listener, agents, records,
                                 groups, outbound=self.outbound)
        self.backend.on_reconnect = self.calls.reattach_live

    async def start(self) -> None:
        await self.renderer.prune()
        await self.backend.connect()

    async def stop(self) -> None:
        try:
            await self.backend.close()
        finally:
            await self.outbound.aclose()

    async def __aenter__(self) -> Controller:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
