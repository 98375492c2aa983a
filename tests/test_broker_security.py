"""Broker security against a real Mosquitto with the dynamic-security plugin, over plain TCP and TLS:
per-device logins and ACLs (a device reads only its own check-in group's whitelist), the claim credential,
rotation and revocation without a broker restart.

ACL denials are silent for a QoS 1 publisher, so every denial is checked on the subscriber side."""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from provisioning.broker import AlreadyExistsError, BrokerAdmin, BrokerAdminError, NotFoundError
from provisioning.broker_acl import ROLE_CLAIM, ROLE_DEVICES, ROLE_HUB, Acl, claim_acls, device_acls, devices_acls
from provisioning.broker_config import BrokerConfig, broker_conf_text
from provisioning.tls import TlsClient, make_ca, make_server_cert
from tests.support.secure_broker import SecureMosquitto

P = "venue"
PW = {"gate-a": "pw-gate-a-1", "gate-b": "pw-gate-b-1", "claim": "pw-claim"}


async def next_message(client: aiomqtt.Client, within: float = 2.0) -> aiomqtt.Message:
    return await asyncio.wait_for(anext(client.messages), within)


async def expect_nothing(client: aiomqtt.Client, within: float = 0.3) -> None:
    try:
        message = await asyncio.wait_for(anext(client.messages), within)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected delivery on {message.topic}: {message.payload!r}")


def granted(codes: Sequence[Any]) -> bool:
    """SUBACK granted: MQTT v5 reason codes below 0x80 (mosquitto's dynsec answers a denial with 0x87)."""
    return all(int(getattr(code, "value", code)) < 128 for code in codes)


@pytest.fixture
async def admin(secure_broker: SecureMosquitto) -> AsyncIterator[BrokerAdmin]:
    """Roles in place, gates A (group 1) and B (group 2) enrolled, a claim login; the admin also holds the
    hub role."""
    async with secure_broker.admin() as adm:
        await adm.ensure_roles()
        await adm.add_device("gate-a", PW["gate-a"], "gate", group_id=1)
        await adm.add_device("gate-b", PW["gate-b"], "gate", group_id=2)
        await adm.add_service_client("claim", PW["claim"], ROLE_CLAIM)
        yield adm


def hub(broker: SecureMosquitto) -> aiomqtt.Client:
    return broker.client(broker.admin_user, broker.admin_password)


def group(gid: int) -> str:
    return f"{P}/group/{gid}/whitelist"


async def role_acls(admin: BrokerAdmin, rolename: str) -> set[Acl]:
    role = (await admin._run({"command": "getRole", "rolename": rolename}))["role"]
    return {Acl.from_json(a) for a in role["acls"]}


async def reads_only_group(gate: aiomqtt.Client, h: aiomqtt.Client, mine: int, other: int) -> None:
    """``gate`` may subscribe to group ``mine``'s whitelist and not to ``other``'s; a delivery on ``other``
    never reaches it: published first, on the same QoS 1 connection, it would arrive before ``mine``'s."""
    assert granted(await gate.subscribe(group(mine), qos=1))
    assert not granted(await gate.subscribe(group(other), qos=1))
    await h.publish(group(other), b"other group", qos=1)
    await h.publish(group(mine), b"own group", qos=1)
    message = await next_message(gate)
    assert (str(message.topic), message.payload) == (group(mine), b"own group")
    await expect_nothing(gate)


async def test_gate_publishes_only_its_own_uplink_topics(secure_broker: SecureMosquitto, admin: BrokerAdmin) -> None:
    async with hub(secure_broker) as h, secure_broker.client("gate-a", PW["gate-a"]) as gate:
        assert granted(await h.subscribe(f"{P}/#", qos=1))
        for leaf in ("status", "events", "sync", "emergency", "config_ack", "command_result"):
            await gate.publish(f"{P}/device/gate-a/{leaf}", leaf.encode(), qos=1)
            message = await next_message(h)
            assert (str(message.topic), message.payload) == (f"{P}/device/gate-a/{leaf}", leaf.encode())
        for topic in (f"{P}/emergency/command", f"{P}/group/1/whitelist", f"{P}/device/gate-b/events",
                      f"{P}/device/gate-a/ack", f"{P}/device/gate-a/whitelist", f"{P}/device/gate-a/config",
                      f"{P}/device/gate-a/command", f"{P}/hub/keys", f"{P}/provision/reply/{'0' * 32}",
                      f"{P}/provision/request/x"):
            await gate.publish(topic, b"forged", qos=1)
        await expect_nothing(h, 0.5)


async def test_gate_reads_its_own_downlink_and_nothing_of_others(secure_broker: SecureMosquitto,
                                                                 admin: BrokerAdmin) -> None:
    own = [f"{P}/device/gate-a/{leaf}" for leaf in ("ack", "whitelist", "config", "command")]
    shared = [group(1), f"{P}/emergency/command", f"{P}/hub/keys"]   # gate A is in group 1
    async with hub(secure_broker) as h, secure_broker.client("gate-a", PW["gate-a"]) as gate:
        for topic in own + shared:
            assert granted(await gate.subscribe(topic, qos=1)), topic
        for topic in (f"{P}/device/gate-b/#", "#", f"{P}/#", f"{P}/device/+/ack", f"{P}/group/+/whitelist",
                      f"{P}/group/#", group(2), group(3), f"{P}/provision/reply/+", f"{P}/device/gate-b/ack"):
            assert not granted(await gate.subscribe(topic, qos=1)), topic
        for topic in own + shared:
            await h.publish(topic, b"for-a", qos=1)
            message = await next_message(gate)
            assert str(message.topic) == topic
        for leaf in ("ack", "whitelist", "config", "command", "events", "status"):
            await h.publish(f"{P}/device/gate-b/{leaf}", b"for-b", qos=1)
        await h.publish(f"{P}/group/2/whitelist", b"other group", qos=1)
        await h.publish(f"{P}/provision/reply/{'1' * 32}", b"reply", qos=1)
        await expect_nothing(gate, 0.5)


async def test_each_device_reads_only_its_own_groups_whitelist(secure_broker: SecureMosquitto,
                                                                admin: BrokerAdmin) -> None:
    async with (hub(secure_broker) as h, secure_broker.client("gate-a", PW["gate-a"]) as a,
                secure_broker.client("gate-b", PW["gate-b"]) as b):
        await reads_only_group(a, h, mine=1, other=2)
        await reads_only_group(b, h, mine=2, other=1)


async def test_set_group_moves_the_device_to_the_other_groups_whitelist(secure_broker: SecureMosquitto,
                                                                        admin: BrokerAdmin) -> None:
    async with hub(secure_broker) as h:
        async with secure_broker.client("gate-a", PW["gate-a"]) as gate:
            await reads_only_group(gate, h, mine=1, other=2)
            await admin.set_group("gate-a", 1)   # unchanged: the session and its subscription carry on
            await h.publish(group(1), b"still", qos=1)
            assert (await next_message(gate)).payload == b"still"

            await admin.set_group("gate-a", 2)   # at once, in the same session: the group-1 subscription
            assert granted(await gate.subscribe(group(2), qos=1))   # it still holds gets nothing more
            await h.publish(group(1), b"old group", qos=1)
            await h.publish(group(2), b"new group", qos=1)
            message = await next_message(gate)
            assert (str(message.topic), message.payload) == (group(2), b"new group")
            await expect_nothing(gate)
        async with secure_broker.client("gate-a", PW["gate-a"]) as gate:   # and after a reconnect
            await reads_only_group(gate, h, mine=2, other=1)
        assert await role_acls(admin, "device-gate-a") == set(device_acls(P, "gate-a", 2))

        await admin.set_group("gate-a", None)   # no group: no group whitelist at all
        async with secure_broker.client("gate-a", PW["gate-a"]) as gate:
            for gid in (1, 2):
                assert not granted(await gate.subscribe(group(gid), qos=1))
            assert granted(await gate.subscribe(f"{P}/device/gate-a/whitelist", qos=1))
    assert await role_acls(admin, "device-gate-a") == set(device_acls(P, "gate-a"))


async def test_set_group_of_a_device_without_login_is_not_found(secure_broker: SecureMosquitto,
                                                                admin: BrokerAdmin) -> None:
    with pytest.raises(NotFoundError):
        await admin.set_group("gate-z", 1)
    with pytest.raises(NotFoundError):   # a service login is no device
        await admin.set_group("claim", 1)
    with pytest.raises(NotFoundError):   # and no role was left behind for either
        await admin._run({"command": "getRole", "rolename": "device-gate-z"})
    with pytest.raises(TypeError):
        await admin.set_group("gate-a", "+")   # type: ignore[arg-type]
    assert await role_acls(admin, "device-gate-a") == set(device_acls(P, "gate-a", 1))


async def test_ensure_roles_removes_the_old_any_group_pattern(secure_broker: SecureMosquitto,
                                                              admin: BrokerAdmin) -> None:
    old = f"{P}/group/+/whitelist"   # what the shared role allowed before: any one group
    for acl in (Acl("subscribeLiteral", old, allow=False, priority=10), Acl("subscribePattern", old),
                Acl("publishClientReceive", old)):
        await admin._run({"command": "addRoleACL", "rolename": ROLE_DEVICES, **acl.to_json()})
    async with hub(secure_broker) as h:
        async with secure_broker.client("gate-a", PW["gate-a"]) as gate:
            assert granted(await gate.subscribe(group(2), qos=1))   # the hole this change closes
        await admin.ensure_roles()
        assert await role_acls(admin, ROLE_DEVICES) == set(devices_acls(P))
        async with secure_broker.client("gate-a", PW["gate-a"]) as gate:
            await reads_only_group(gate, h, mine=1, other=2)


async def test_ensure_device_roles_upgrades_roles_of_enrolled_devices(secure_broker: SecureMosquitto,
                                                                      admin: BrokerAdmin) -> None:
    for device_id in ("gate-a", "gate-b"):   # as enrolled before groups were per device
        await admin._ensure_role(f"device-{device_id}", device_acls(P, device_id))
    await admin._run({"command": "removeClientRole", "username": "gate-b", "rolename": "device-gate-b"})
    async with hub(secure_broker) as h:
        async with secure_broker.client("gate-a", PW["gate-a"]) as gate:
            assert not granted(await gate.subscribe(group(1), qos=1))
        await admin.ensure_device_roles({"gate-a": 1, "gate-b": 2, "gate-z": 3, "claim": 1})
        await admin.ensure_device_roles({"gate-a": 1, "gate-b": 2, "gate-z": 3, "claim": 1})   # idempotent
        assert await role_acls(admin, "device-gate-a") == set(device_acls(P, "gate-a", 1))
        assert await role_acls(admin, "device-gate-b") == set(device_acls(P, "gate-b", 2))
        for rolename in ("device-gate-z", "device-claim"):   # no login (or no device login): skipped
            with pytest.raises(NotFoundError):
                await admin._run({"command": "getRole", "rolename": rolename})
        async with (secure_broker.client("gate-a", PW["gate-a"]) as a,
                    secure_broker.client("gate-b", PW["gate-b"]) as b):
            await reads_only_group(a, h, mine=1, other=2)
            await reads_only_group(b, h, mine=2, other=1)   # its lost role was given back
            assert granted(await b.subscribe(f"{P}/device/gate-b/ack", qos=1))


async def test_wrong_password_unknown_login_and_anonymous_are_refused(secure_broker: SecureMosquitto,
                                                                       admin: BrokerAdmin) -> None:
    for username, password in (("gate-a", "wrong"), ("gate-a", PW["gate-b"]), ("nobody", "x"),
                               ("admin", "wrong")):
        with pytest.raises(aiomqtt.MqttError):
            async with secure_broker.client(username, password):
                pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", secure_broker.port, protocol=aiomqtt.ProtocolVersion.V5,
                                  timeout=5):
            pass


async def test_claim_sends_requests_and_reads_only_its_own_exact_reply(secure_broker: SecureMosquitto,
                                                                       admin: BrokerAdmin) -> None:
    mine, theirs = "a" * 32, "b" * 32
    async with (hub(secure_broker) as h, secure_broker.client("claim", PW["claim"]) as first,
                secure_broker.client("claim", PW["claim"]) as second):
        assert granted(await h.subscribe(f"{P}/provision/request/+", qos=1))
        await first.publish(f"{P}/provision/request/SN1", b"request", qos=1)
        assert (await next_message(h)).payload == b"request"
        await first.publish(f"{P}/device/gate-a/status", b"forged", qos=1)
        await expect_nothing(h)

        assert granted(await first.subscribe(f"{P}/provision/reply/{mine}", qos=1))
        for topic in (f"{P}/provision/reply/+", f"{P}/provision/reply/#", f"{P}/provision/#", f"{P}/#", "#",
                      f"{P}/+/reply/{mine}", f"{P}/device/gate-a/config"):
            assert not granted(await second.subscribe(topic, qos=1)), topic
        assert granted(await second.subscribe(f"{P}/provision/reply/{theirs}", qos=1))  # exact, but not its own

        await h.publish(f"{P}/provision/reply/{mine}", b"sealed reply", qos=1)
        assert (await next_message(first)).payload == b"sealed reply"
        await expect_nothing(second, 0.5)


async def test_set_password_rotates_without_restart(secure_broker: SecureMosquitto, admin: BrokerAdmin) -> None:
    await admin.set_password("gate-a", "pw-gate-a-2")
    with pytest.raises(aiomqtt.MqttError):
        async with secure_broker.client("gate-a", PW["gate-a"]):
            pass
    async with secure_broker.client("gate-a", "pw-gate-a-2"):
        pass
    with pytest.raises(BrokerAdminError):
        await admin.set_password("gate-z", "whatever")


async def test_remove_device_kicks_its_session_and_refuses_its_login(secure_broker: SecureMosquitto,
                                                                     admin: BrokerAdmin) -> None:
    assert await admin.list_devices() == ["gate-a", "gate-b"]
    async with secure_broker.client("gate-a", PW["gate-a"]) as gate:
        await gate.subscribe(f"{P}/device/gate-a/command", qos=1)
        reading = asyncio.create_task(anext(gate.messages))
        await asyncio.sleep(0.05)
        await admin.remove_device("gate-a")
        with pytest.raises(aiomqtt.MqttError):
            await asyncio.wait_for(reading, 2.0)   # kicked at once, not at the next keepalive
    with pytest.raises(aiomqtt.MqttError):
        async with secure_broker.client("gate-a", PW["gate-a"]):
            pass
    assert await admin.list_devices() == ["gate-b"]
    await admin.remove_device("gate-a")   # idempotent
    await admin.add_device("gate-a", "pw-new", "gate")   # a re-enrolled device gets a fresh login and role
    with pytest.raises(AlreadyExistsError):
        await admin.add_device("gate-a", "pw-new", "gate")
    async with secure_broker.client("gate-a", "pw-new"):
        pass
    assert secure_broker.proc is not None and secure_broker.proc.poll() is None   # never restarted


async def test_tls_with_the_venue_ca_works_and_without_it_is_refused(secure_broker: SecureMosquitto,
                                                                     admin: BrokerAdmin, tmp_path: Path) -> None:
    async with (hub(secure_broker) as h, secure_broker.client("gate-a", PW["gate-a"], tls=True) as gate):
        await h.subscribe(f"{P}/device/gate-a/status", qos=1)
        await gate.publish(f"{P}/device/gate-a/status", b"online over tls", qos=1)
        assert (await next_message(h)).payload == b"online over tls"
    other_ca, _ = make_ca(tmp_path / "other", "someone else's CA")
    for context in (ssl.create_default_context(), TlsClient(ca_file=other_ca).context()):
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", secure_broker.tls_port, username="gate-a",
                                      password=PW["gate-a"], protocol=aiomqtt.ProtocolVersion.V5,
                                      tls_context=context, timeout=5):
                pass
    tls = TlsClient(ca_file=secure_broker.ca_cert)
    async with BrokerAdmin("127.0.0.1", secure_broker.tls_port, secure_broker.admin_user,
                           secure_broker.admin_password, tls=tls) as over_tls:
        assert "gate-a" in await over_tls.list_devices()


async def test_ensure_roles_is_idempotent_and_repairs_a_changed_role(secure_broker: SecureMosquitto,
                                                                      admin: BrokerAdmin) -> None:
    await admin._run({"command": "removeRoleACL", "rolename": "claim", "acltype": "subscribeLiteral",
                      "topic": f"{P}/provision/reply/+"})
    await admin._run({"command": "addRoleACL", "rolename": "claim", "acltype": "subscribePattern",
                      "topic": "#", "allow": True})
    await admin.ensure_roles()
    await admin.ensure_roles()
    role = (await admin._run({"command": "getRole", "rolename": "claim"}))["role"]
    have = {(a["acltype"], a["topic"], a["allow"], a["priority"]) for a in role["acls"]}
    assert have == {(a.acltype, a.topic, a.allow, a.priority) for a in claim_acls(P)}
    assert await role_acls(admin, ROLE_DEVICES) == set(devices_acls(P))


async def test_bad_admin_password_is_a_typed_error(secure_broker: SecureMosquitto) -> None:
    with pytest.raises(BrokerAdminError, match="cannot connect") as caught:
        async with BrokerAdmin("127.0.0.1", secure_broker.port, "admin", "wrong-secret"):
            pass
    assert "wrong-secret" not in str(caught.value)


def test_keys_are_private_and_the_server_cert_names_its_hosts(tmp_path: Path) -> None:
    from cryptography import x509

    ca_cert, ca_key = make_ca(tmp_path, "venue CA")
    cert, key = make_server_cert(tmp_path, ca_cert, ca_key, ["hub.local", "10.0.0.2"])
    assert stat.S_IMODE(ca_key.stat().st_mode) == 0o600 and stat.S_IMODE(key.stat().st_mode) == 0o600
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hub.local"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    text = broker_conf_text(BrokerConfig(tmp_path / "b", ca_file=ca_cert, cert_file=cert, key_file=key))
    for line in ("allow_anonymous false", "set_tcp_nodelay true", "persistence true", "listener 1883 127.0.0.1",
                 "listener 8883 0.0.0.0", "tls_version tlsv1.2"):
        assert line in text.splitlines()
    assert "mosquitto_dynamic_security.so" in text


def test_initial_dynsec_file_holds_no_clear_password(secure_broker: SecureMosquitto) -> None:
    path = secure_broker.config.dynsec_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secure_broker.admin_password not in path.read_text()
    assert json.loads(path.read_text())["defaultACLAccess"]["subscribe"] is False


async def test_hubs_share_the_uplinks_and_a_device_cannot_join_the_share(secure_broker: SecureMosquitto,
                                                                        admin: BrokerAdmin) -> None:
    """Several hubs consume device uplinks through ``$share/hub/...`` (each message to one of them); a gate's
    login may not subscribe to that share, or it would take other devices' events away from the hubs."""
    await admin.add_service_client("hub-2", "hub-2-password", ROLE_HUB)
    shared = f"$share/hub/{P}/device/+/events"
    async with (secure_broker.client("hub-2", "hub-2-password") as h,
                secure_broker.client("gate-a", PW["gate-a"]) as gate,
                secure_broker.client("gate-b", PW["gate-b"]) as other):
        assert not granted(await other.subscribe(shared, qos=1))
        assert not granted(await other.subscribe(f"$share/x/{P}/#", qos=1))
        assert granted(await h.subscribe(shared, qos=1))
        await gate.publish(f"{P}/device/gate-a/events", b"batch", qos=1)
        message = await next_message(h)
        assert (str(message.topic), message.payload) == (f"{P}/device/gate-a/events", b"batch")  # the real topic
        await expect_nothing(other, 0.3)
