"""The ``[metrics]`` section of a device daemon's config, apart from :mod:`confkit.metrics` so that
loading a config does not import prometheus-client (a gate without metrics stays under its memory goal)."""

from __future__ import annotations

from pydantic import Field

from confkit import Section

PORT_DOC = "TCP port of the metrics endpoint; 0: no metrics endpoint"


class MetricsConfig(Section):
    """Where the daemon serves ``/metrics`` (Prometheus text format); see docs/operations.md. Each daemon's
    config subclasses it with its own default port (gate 9101, kiosk 9102, printer 9103)."""

    host: str = Field("127.0.0.1", description="address the metrics endpoint listens on: 127.0.0.1 (local "
                      "only), or the device's LAN address (or 0.0.0.0) for a Prometheus server on another host; "
                      "metrics name no people, but firewall the port to the Prometheus host")
    port: int = Field(0, ge=0, le=65535, description=PORT_DOC)
