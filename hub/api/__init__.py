"""HTTP API routers: parse and serialise, then call a service."""
