"""One error root for the hub; every subclass also inherits the matching builtin."""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose. ``status`` is the HTTP status it maps to."""

    status = 500


class ConfigError(HubError, ValueError):
    """The configuration file or environment has a bad key or value."""


class NotFound(HubError, LookupError):
    status = 404


class Conflict(HubError, ValueError):
    status = 409


class Invalid(HubError, ValueError):
    status = 422


class Unauthenticated(HubError, PermissionError):
    status = 401


class Forbidden(HubError, PermissionError):
    status = 403
