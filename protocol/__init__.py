"""The shared vocabulary of hub and devices: topics, messages, tokens, whitelists, signing.

Nothing in this package does I/O. Both ends import it; neither end may invent its own wire format.
"""

PROTOCOL_VERSION = 1
