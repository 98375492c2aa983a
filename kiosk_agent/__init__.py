"""The kiosk agent: a self-service ticket-collection kiosk (自助取票机).

It serves a touchscreen web UI on localhost (:mod:`kiosk_agent.app`), holds the kiosk's hub login and
talks to the hub's kiosk API (:mod:`kiosk_agent.hub_client`), and reads the ID-card reader over serial
(:mod:`kiosk_agent.idreader`). The browser only ever sees the agent's own small API.
"""

__version__ = "0.1.0"


class KioskError(Exception):
    """Root of every error raised by :mod:`kiosk_agent`."""


class ConfigError(KioskError, ValueError):
    """The configuration file or environment is invalid; the message names the bad key."""
