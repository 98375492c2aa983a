"""The gate agent: a daemon on a turnstile or handheld that checks tickets offline.

A thin async shell around :func:`protocol.decision.validate`: a serial scanner feeds lines to the
:class:`~gate_agent.checkin.Checker`, which decides from the local SQLite store, journals the
decision durably and drives the actuator; :class:`~gate_agent.link.Link` reports every event to
the hub over MQTT and keeps the signed whitelist current.
"""

__version__ = "0.1.0"


class GateError(Exception):
    """Root of every error raised by :mod:`gate_agent`."""


class ConfigError(GateError, ValueError):
    """The configuration file or environment is invalid; the message names the bad key."""
