"""Device enrollment by claim: the command line of :mod:`confkit.enrolment`, where the code lives.

    $ python -m provisioning.device enroll --bootstrap bootstrap.toml --identity-dir /var/lib/gate/identity
    $ python -m provisioning.device fingerprint --bootstrap bootstrap.toml   # for the device's label

The device side of enrolment is part of the device runtime (:mod:`confkit`), so a daemon never imports
:mod:`provisioning`; the names below are re-exported for existing scripts and imports.
"""

from __future__ import annotations

import sys

from confkit.enrolment import (
    IDENTITY_FILE,
    KEY_FILE,
    Bootstrap,
    BootstrapBroker,
    BootstrapError,
    EnrollmentRejected,
    EnrollmentTimeout,
    Identity,
    IdentityError,
    ProvisioningError,
    announce_fingerprint,
    check_reply,
    device_key,
    device_key_at,
    enroll,
    identity_from,
    installed_version,
    load_or_enroll,
    main,
    make_request,
    public_key_b64,
    tls_params,
    write_private,
)

__all__ = [
    "IDENTITY_FILE", "KEY_FILE", "Bootstrap", "BootstrapBroker", "BootstrapError", "EnrollmentRejected",
    "EnrollmentTimeout", "Identity", "IdentityError", "ProvisioningError", "announce_fingerprint", "check_reply",
    "device_key", "device_key_at", "enroll", "identity_from", "installed_version", "load_or_enroll", "main",
    "make_request", "public_key_b64", "tls_params", "write_private",
]

if __name__ == "__main__":
    sys.exit(main())
