"""The part of a :class:`confkit.device_agent.DeviceHost` every daemon has the same way.

A daemon's host is its broker session (``link``: birth and config version carried in its status, the served
topics, publish, relogin, key changes) and its store (``meta`` values). :class:`LinkedHost` delegates those;
a daemon's subclass says what is its own: ``software_version``, :meth:`validate_config`, :meth:`resync`,
:meth:`diagnostics`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

Handler = Callable[[bytes], Awaitable[None]]


class HostLink(Protocol):
    birth: int | None
    config_version: int | None

    def serve(self, topic: str, handler: Handler) -> None: ...

    def serve_keys(self, topic: str, handler: Handler) -> None: ...

    async def publish(self, topic: str, payload: bytes) -> bool: ...

    def relogin(self, username: str, password: str) -> None: ...

    async def keys_changed(self) -> None: ...

    def keys_unverified(self, reason: str, resolved: Callable[[], bool]) -> None: ...


class MetaStore(Protocol):
    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, **values: str) -> None: ...


class LinkedHost:
    """Delegates the broker and store parts of a device host to ``link`` and ``store``."""

    def __init__(self, data_dir: Path, link: HostLink, store: MetaStore) -> None:
        self._data_dir, self._link, self._store = data_dir, link, store

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def birth(self) -> int | None:
        return self._link.birth

    @birth.setter
    def birth(self, value: int | None) -> None:
        self._link.birth = value

    @property
    def config_version(self) -> int | None:
        return self._link.config_version

    @config_version.setter
    def config_version(self, value: int | None) -> None:
        self._link.config_version = value

    def get_meta(self, key: str) -> str | None:
        return self._store.get_meta(key)

    def set_meta(self, **values: str) -> None:
        self._store.set_meta(**values)

    def serve(self, topic: str, handler: Handler) -> None:
        self._link.serve(topic, handler)

    def serve_keys(self, topic: str, handler: Handler) -> None:
        self._link.serve_keys(topic, handler)

    async def publish(self, topic: str, payload: bytes) -> bool:
        return await self._link.publish(topic, payload)

    def relogin(self, username: str, password: str) -> None:
        self._link.relogin(username, password)

    async def keys_changed(self) -> None:
        await self._link.keys_changed()

    def keys_unverified(self, reason: str, resolved: Callable[[], bool]) -> None:
        self._link.keys_unverified(reason, resolved)

    def diagnostics(self) -> dict[str, Any]:
        return {}
