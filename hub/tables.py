"""The hub schema as SQLAlchemy Core tables (the Alembic revisions create the same tables)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    # a device's own login (a handheld's online checks, a kiosk): the only device id it may check in as
    Column("device_id", String(64), nullable=True),
    Column("disabled_at", Float, nullable=True),  # set: its login is refused and its sessions are gone
    Index("ix_users_device_id", "device_id", unique=True),
)

login_throttle = Table(  # wrong passwords per "user:<name>" and per "addr:<source address>" (hub/services/auth.py)
    "login_throttle", metadata,
    Column("key", String(200), primary_key=True),
    Column("failures", Integer, nullable=False),  # wrong passwords since window_start
    Column("window_start", Float, nullable=False),
    Column("locked_until", Float),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("expires_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Float, nullable=False),
    Column("username", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(128), nullable=False),
    Column("detail", Text, nullable=False, default=""),
)

venues = Table(
    "venues", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False, default="Asia/Shanghai"),  # IANA: the venue's day and clock
)

performances = Table(
    "performances", metadata,
    Column("id", Integer, primary_key=True),
    Column("venue_id", Integer, ForeignKey("venues.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("doors_open", Float, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("print_replaces_eticket", Boolean, nullable=False, default=True),  # a printed ticket gets a new token
    Column("retired", Boolean, nullable=False, default=False),  # no more sales; sold tickets stay valid
)

ticket_types = Table(
    "ticket_types", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False),
    Column("name_zh", String(100), nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("retired", Boolean, nullable=False, default=False),  # no more sales
)

checkin_groups = Table(
    "checkin_groups", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("venue_id", Integer, ForeignKey("venues.id"), nullable=False),
    Column("seq", Integer, nullable=False, default=0),
    Column("admit_unlisted", Boolean, nullable=False, default=True),  # offline: tickets newer than the whitelist
    Column("counter_group_id", Integer),  # counts entries with that group (linked); None: on its own
    Column("capacity", Integer),  # people the zone holds (live check-in: inside vs capacity); None: not set
)

group_performances = Table(
    "group_performances", metadata,
    Column("group_id", Integer, ForeignKey("checkin_groups.id"), primary_key=True),
    Column("performance_id", Integer, ForeignKey("performances.id"), primary_key=True, index=True),
)

channels = Table(
    "channels", metadata,
    Column("id", Integer, primary_key=True),
    Column("group_id", Integer, ForeignKey("checkin_groups.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("max_entries", Integer, nullable=False, default=1),
    Column("retired", Boolean, nullable=False, default=False),  # closed: gates refuse with channel_closed
    Column("rules", JSON),  # partial protocol.rules.EntryRules (wire keys) over the defaults and max_entries
    Column("type_rules", JSON),  # {"<ticket type id>": partial rules} merged over the channel's
    Column("card_rules", JSON),  # partial rules for member cards / annual passes; None: the card defaults
)

channel_types = Table(
    "channel_types", metadata,
    Column("channel_id", Integer, ForeignKey("channels.id"), primary_key=True),
    Column("ticket_type_id", Integer, ForeignKey("ticket_types.id"), primary_key=True),
)

tickets = Table(
    "tickets", metadata,
    Column("id", Integer, primary_key=True),
    Column("performance_id", Integer, ForeignKey("performances.id"), nullable=False, index=True),
    Column("ticket_type_id", Integer, ForeignKey("ticket_types.id"), nullable=False),
    Column("persons", Integer, nullable=False, default=1),
    Column("holder_name", String(200), nullable=False),
    Column("holder_phone", String(40), index=True),  # collection by phone / ID card (migration 0006)
    Column("holder_id_number", String(40), index=True),
    Column("status", String(16), nullable=False, default="valid"),  # valid, refunded, void
    Column("status_reason", String(200)),
    Column("status_at", Float),  # when it was refunded or voided (an offline admission before that is fine)
    Column("used", Integer, nullable=False, default=0),
    Column("token", String(120), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("collection_code", String(16), index=True),  # 取票码, shared by tickets bought together
    Column("collected_at", Float),  # printed at a kiosk (or by staff); None: still an e-ticket only
    Column("collected_by", String(64)),  # the kiosk (or staff) user
    Column("collected_printer", String(64)),
    Column("replaced_by", Integer),  # the printed ticket that replaced this (now void) e-ticket
    Column("replaces", Integer),  # the e-ticket this printed ticket replaced
)

checkin_events = Table(
    "checkin_events", metadata,
    Column("event_id", String(32), primary_key=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("group_id", Integer, nullable=False),
    Column("channel_id", Integer, nullable=False),
    Column("device_seq", BigInteger, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("ticket_id", Integer, index=True),
    Column("performance_id", Integer),
    Column("ticket_type_id", Integer),
    Column("persons", Integer, nullable=False, default=0),
    Column("direction", String(8), nullable=False, default="entry"),
    Column("offline", Boolean, nullable=False),
    Column("source", String(16), nullable=False),
    Column("scanned_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("conflict", Boolean, nullable=False, default=False),
    Column("excerpt", String(64)),
    Column("annuls", String(32)),  # for reason "annulled": the admission event it takes back
    Column("card_id", Integer),  # a member card / annual pass event (source "nfc")
    Column("credit", Boolean, nullable=False, default=False),  # admitted on persons given back (not a new entry)
    Column("unlisted", Boolean, nullable=False, default=False),  # admitted offline on its signature alone
    Column("forced_by", String(64)),  # supervisor override: who force-admitted
    Column("denied", String(32)),  # supervisor override: the reason it had been refused
    # the reports' keyset paging and per-performance summary (migration 0012; hub/services/reports.py)
    Index("ix_checkin_events_scanned_event", "scanned_at", "event_id"),
    Index("ix_checkin_events_performance_scanned", "performance_id", "scanned_at", "event_id"),
    Index("ix_checkin_events_channel_scanned", "channel_id", "scanned_at", "event_id"),
)

ticket_usage = Table(  # protocol.usage.Usage of a ticket in one counting scope (a group, or linked groups)
    "ticket_usage", metadata,
    Column("ticket_id", Integer, primary_key=True),
    Column("scope_id", Integer, primary_key=True, index=True),  # the group's counter_group_id, else its id
    Column("entries", Integer, nullable=False),
    Column("exits", Integer, nullable=False),
    Column("credit", Integer, nullable=False),
    Column("last_entry", BigInteger, nullable=False),
    Column("last_exit", BigInteger, nullable=False),
    Column("day", Integer, nullable=False),  # venue day YYYYMMDD of the newest entry
    Column("day_entries", Integer, nullable=False),
)

supervisors = Table(  # who may force-admit a refused ticket on a handheld (PIN hash, card UID hash)
    "supervisors", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("pin_hash", String(200), nullable=False),  # protocol.supervisor.hash_pin
    Column("card_key", String(32), unique=True),  # protocol.cards.card_key(uid)
    Column("retired", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

member_cards = Table(  # member cards and annual passes; the raw UID is never stored
    "member_cards", metadata,
    Column("id", Integer, primary_key=True),
    Column("uid_hash", String(32), nullable=False, unique=True),  # protocol.cards.card_key(uid)
    Column("kind", String(16), nullable=False),  # member, annual
    Column("holder_name", String(200), nullable=False),
    Column("valid_from", Float, nullable=False),
    Column("valid_until", Float, nullable=False),
    Column("channel_ids", JSON, nullable=False),
    Column("entries_per_day", Integer, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoked_reason", String(200)),
    Column("created_at", Float, nullable=False),
)

whitelist_deltas = Table(
    "whitelist_deltas", metadata,
    Column("group_id", Integer, ForeignKey("checkin_groups.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("op", String(16), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("group_id", Integer),
    Column("channel_id", Integer),
    Column("whitelist_seq", Integer),
    Column("outbox", Integer),
    Column("version", String(64)),
    Column("health", JSON),  # {"turnstile": "ok", "camera": "missing", ...}
    Column("birth", Integer),  # the device's boot counter; a new value counts a reboot
    Column("reboots", Integer, nullable=False, default=0),
    Column("interval", Float),  # seconds to the next heartbeat at the latest, as the device said
    Column("heard_at", Float),  # hub clock of the newest status (liveness is judged on it)
    Column("config_version", Integer),  # the hub-assigned config version the device reports in force
    Column("printer", JSON),  # a printer's newest protocol.printing.PrinterCondition
    Column("set_aside", Integer),  # outbox rows the device set aside, unsendable (None: none, or too old to say)
    Column("state_since", Float),  # hub clock when ``state`` last changed (online/offline since)
)

emergency_commands = Table(  # every emergency command the hub issued; the newest is the current state
    "emergency_commands", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),  # hub_sequences "emergency"
    Column("issued_at", Float, nullable=False),
    Column("issued_by", String(128), nullable=False),  # a user name, or "fire-alarm:<device id>"
    Column("reason", String(200), nullable=False),
    Column("action", String(16), nullable=False),  # open, clear
    Column("state", JSON, nullable=False),  # {"open_all", "open_group_ids", "open_channel_ids"}
    Column("envelope", LargeBinary, nullable=False),  # seal(KIND_EMERGENCY, ...), published retained
)

device_emergency = Table(  # the newest EmergencyState each device reported
    "device_emergency", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # open, normal
    Column("seq", Integer, nullable=False),  # newest hub command the device applied
    Column("cause", String(16)),  # command, fire, button
    Column("at", Float, nullable=False),  # device clock
    Column("received_at", Float, nullable=False),
)

enrollment_requests = Table(  # the newest request of each (serial, device key); two pending keys of one
    "enrollment_requests", metadata,  # serial: the serial is contested (hub/services/enrollment.py)
    Column("serial", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("hardware_model", String(100), nullable=False),
    Column("software_version", String(40), nullable=False),
    Column("public_key", String(64), primary_key=True),
    Column("reply_to", String(32), nullable=False),
    Column("nonce", String(32), nullable=False),
    Column("at", Float, nullable=False),  # device clock
    Column("received_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending, approved, rejected
    Column("decided_by", String(64)),
    Column("reason", String(200)),
)

enrollment_nonces = Table(  # every request nonce seen: a replayed request is refused
    "enrollment_nonces", metadata,
    Column("nonce", String(32), primary_key=True),
    Column("serial", String(64), nullable=False),
    Column("seen_at", Float, nullable=False),
)

provisioned_devices = Table(  # devices admitted by enrollment, with their assigned config
    "provisioned_devices", metadata,
    Column("device_id", String(64), primary_key=True),
    Column("serial", String(64), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("site", String(100), nullable=False),
    Column("group_id", Integer),
    Column("channel_id", Integer),
    Column("public_key", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # active, revoked
    Column("status_reason", String(200)),
    Column("created_at", Float, nullable=False),
    Column("config", JSON, nullable=False),
    Column("config_version", Integer, nullable=False),
    Column("config_envelope", LargeBinary, nullable=False),  # seal(KIND_CONFIG, ...), published retained
    Column("acked_version", Integer),
    Column("ack_error", String(500)),
    Column("acked_at", Float),
    Column("fire_input", Boolean, nullable=False, default=False),  # its local fire alarm may open every gate
)

security_events = Table(  # what a device said that the registry contradicts, or that did not verify
    "security_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),  # hub clock
    Column("device_id", String(64), nullable=False, index=True),  # the topic's (broker login's) device
    Column("what", String(40), nullable=False),  # unregistered, bad_signature, foreign_device, wrong_group, ...
    Column("detail", String(500), nullable=False),
    Column("payload", JSON),  # quarantined events, kept (not counted) so nothing is lost
)

device_commands = Table(  # remote commands; a result arrives on .../command_result
    "device_commands", metadata,
    Column("command_id", String(32), primary_key=True),
    Column("device_id", String(64), nullable=False, index=True),
    Column("name", String(32), nullable=False),
    Column("issued_by", String(64), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("ok", Boolean),  # None until the result arrives
    Column("result", JSON),
    Column("error", String(500)),
    Column("done_at", Float),
)

hub_key_lists = Table(  # every hub.keys list published; the newest is in force
    "hub_key_lists", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("keys", JSON, nullable=False),  # {"1": "<base64 public key>", "2": ...}
    Column("active_kid", Integer, nullable=False),  # the key the hub signs with
    Column("issued_at", Float, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
)

print_jobs = Table(  # signed print jobs sent to ticket printers (kiosk collection and staff reprints)
    "print_jobs", metadata,
    Column("job_id", String(32), primary_key=True),
    Column("ticket_id", Integer, nullable=False, index=True),
    Column("printer_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # collect, reprint
    Column("requested_by", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # queued, printed, failed, duplicate, refused
    Column("reason", String(200)),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("done_at", Float),
)

kiosk_otps = Table(  # one-time codes sent by SMS for a phone lookup (stored hashed) and the lock-out
    "kiosk_otps", metadata,
    Column("phone", String(40), primary_key=True),
    Column("code_hash", String(64)),  # None once used
    Column("salt", String(32), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("failures", Integer, nullable=False, default=0),  # wrong codes in a row
    Column("locked_until", Float),
)

kiosk_lookups = Table(  # short-lived lookup tokens (stored as SHA-256): which tickets a kiosk may collect
    "kiosk_lookups", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(64), nullable=False),
    Column("ticket_ids", JSON, nullable=False),
    Column("expires_at", Float, nullable=False),
)

hub_sequences = Table(  # numbers the hubs hand out (hub/services/sequences.py): one row per name, bumped in place
    "hub_sequences", metadata,
    Column("name", String(40), primary_key=True),  # emergency, key_list
    Column("value", BigInteger, nullable=False),  # the last number handed out
)

rate_hits = Table(  # shared rate limits (hub/services/otp.py RateLimiter): hits per key per window slot
    "rate_hits", metadata,
    Column("key", String(200), primary_key=True),
    Column("slot", BigInteger, primary_key=True),  # floor(time / window)
    Column("hits", Integer, nullable=False),
)
