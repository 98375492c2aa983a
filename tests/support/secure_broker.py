"""A real Mosquitto as a venue runs it: dynamic-security logins and ACLs, no anonymous access, a plain
loopback listener and a TLS listener with a fresh venue CA. Beside :class:`tests.support.broker.Mosquitto`
(anonymous), which the other tests use."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import aiomqtt

from provisioning.broker import BrokerAdmin
from provisioning.broker_config import BrokerConfig, write_broker_config
from provisioning.tls import TlsClient, make_ca, make_server_cert
from tests.support.net import free_ports, port_open, stop_process, wait_for


class SecureMosquitto:
    """``mosquitto -c <conf>`` in its own directory; ``admin`` is the dynsec admin and has the hub role."""

    def __init__(self, workdir: Path, *, prefix: str = "venue") -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise RuntimeError("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = workdir
        self.prefix = prefix
        self.port, self.tls_port = free_ports(2)
        self.admin_user = "admin"
        self.admin_password = secrets.token_urlsafe(18)
        tls_dir = workdir / "tls"
        self.ca_cert, self.ca_key = make_ca(tls_dir, "test venue CA")
        self.server_cert, self.server_key = make_server_cert(tls_dir, self.ca_cert, self.ca_key,
                                                             ["localhost", "127.0.0.1"])
        self.config = BrokerConfig(
            workdir, admin_username=self.admin_user, prefix=prefix, plain_port=self.port,
            tls_port=self.tls_port, tls_bind="127.0.0.1", ca_file=self.ca_cert, cert_file=self.server_cert,
            key_file=self.server_key, run_as="root" if os.geteuid() == 0 else None,
            log_types=("error", "warning", "notice", "information"))
        self.conf = write_broker_config(self.config, self.admin_password)
        self.log = self.config.log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def tls(self) -> TlsClient:
        return TlsClient(ca_file=self.ca_cert)

    def admin(self) -> BrokerAdmin:
        return BrokerAdmin("127.0.0.1", self.port, self.admin_user, self.admin_password, prefix=self.prefix)

    def client(self, username: str, password: str, *, tls: bool = False, **kwargs: object) -> aiomqtt.Client:
        """An MQTT v5 client of this broker (plain loopback listener, or the TLS one trusting the venue CA)."""
        port = self.tls_port if tls else self.port
        context = self.tls.context() if tls else None
        return aiomqtt.Client("127.0.0.1", port, username=username, password=password, timeout=5,
                              protocol=aiomqtt.ProtocolVersion.V5, tls_context=context, **kwargs)  # type: ignore[arg-type]

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (port_open(self.port) and port_open(self.tls_port)) or self._died(), timeout=10,
                 what=f"mosquitto (dynsec) on ports {self.port}/{self.tls_port}")
        self._died()

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text()[-2000:] if self.log.exists() else "(no log)"
            raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{tail}")
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig, timeout=5)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
