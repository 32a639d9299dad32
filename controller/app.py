"""The Controller: builds the backend, whisper renderer, webhook sender and call
service from the config at start-up, and takes them down in order."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from controller.backends.asterisk.backend import AsteriskBackend
from controller.backends.base import Backend
from controller.calls.service import CallService, TransitionListener
from controller.config import Config
from controller.tts import WhisperRenderer
from controller.webhooks import WebhookSender


def make_backend(config: Config) -> Backend:
    return AsteriskBackend(config.asterisk)


class Controller:
    def __init__(self, config: Config, on_transition: TransitionListener | None = None) -> None:
        self.config = config
        self.backend = make_backend(config)
        self.renderer = WhisperRenderer(Path(config.media.whisper_dir), config.whisper.voice,
                                        config.whisper.rate, config.whisper.max_seconds)
        self.webhooks = WebhookSender(config.webhook.timeout, config.webhook.attempts)
        self.calls = CallService(config, self.backend, self.renderer, self.webhooks, on_transition)

    async def start(self) -> None:
        await self.backend.connect()

    async def stop(self) -> None:
        await self.backend.close()
        await self.webhooks.close()

    async def __aenter__(self) -> Controller:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
