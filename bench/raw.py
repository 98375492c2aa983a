"""Raw limits every benchmark reports next to its own figures, measured in the same run."""

from __future__ import annotations

import socket
import statistics
import time

import aiomqtt
import nacl.signing


def raw_verify_us(rounds: int = 2000) -> float:
    """Median time of one PyNaCl Ed25519 verify of a token-sized message, in microseconds."""
    key = nacl.signing.SigningKey.generate()
    signed = key.sign(b"x" * 37)
    verify = key.verify_key.verify
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        verify(signed)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


async def raw_mqtt_round_trip_ms(port: int, rounds: int = 200, host: str = "127.0.0.1") -> float:
    """Median QoS 1 publish-to-receive time of a small message through the broker, in milliseconds."""
    topic = f"bench/raw/{time.monotonic_ns()}"
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5,
                              socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]) as client:
        await client.subscribe(topic, qos=1)
        samples = []
        messages = client.messages
        for i in range(rounds):
            t0 = time.perf_counter()
            await client.publish(topic, str(i).encode(), qos=1)
            async for _ in messages:
                break
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples[10:]) * 1000


if __name__ == "__main__":
    print(round(raw_verify_us(), 1), "us")
