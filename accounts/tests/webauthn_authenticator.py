"""A software WebAuthn authenticator for tests: what a browser and a security key would answer.

`create(options)` answers `navigator.credentials.create()` with a `none` attestation and
`get(options)` answers `navigator.credentials.get()` with an assertion signed by the credential's
EC P-256 key, both as the JSON (WebAuthn Level 3 `RegistrationResponseJSON` /
`AuthenticationResponseJSON`) that allauth parses with fido2's `RegistrationResponse.from_dict` /
`AuthenticationResponse.from_dict`. The keyword arguments of `get` forge what an attacker would
change: the origin, the signing key, the signature counter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    Aaguid,
    AttestationObject,
    AttestedCredentialData,
    AuthenticatorData,
    CollectedClientData,
)

# The site the tests' requests come to: Django's test client sends `Host: testserver`, and allauth
# takes the RP ID from the request's host (allauth.mfa.adapter.get_public_key_credential_rp_entity).
ORIGIN = "https://testserver"


class NoCredentialForRequest(Exception):
    """The authenticator holds no credential the request allows (a browser would say so too)."""


class SoftwareAuthenticator:
    """One credential on one authenticator, made by `create` and used by `get`."""

    def __init__(self, *, origin: str = ORIGIN) -> None:
        self.origin = origin
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.user_handle: bytes | None = None

    @property
    def encoded_credential_id(self) -> str:
        return websafe_encode(self.credential_id)

    def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Register the credential for `options` (allauth's `creation_options`)."""
        public_key = options["publicKey"]
        rp_id = public_key["rp"]["id"]
        self.user_handle = websafe_decode(public_key["user"]["id"])
        selection = public_key.get("authenticatorSelection") or {}
        resident = selection.get("residentKey") in ("required", "preferred")
        client_data = CollectedClientData.create(
            type=CollectedClientData.TYPE.CREATE, challenge=public_key["challenge"], origin=self.origin
        )
        credential_data = AttestedCredentialData.create(
            Aaguid.NONE, self.credential_id, ES256.from_cryptography_key(self.private_key.public_key())
        )
        flags = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV | AuthenticatorData.FLAG.AT
        authenticator_data = AuthenticatorData.create(
            sha256(rp_id.encode()).digest(), flags, self.sign_count, credential_data
        )
        attestation = AttestationObject.create("none", authenticator_data, {})
        return {
            "id": self.encoded_credential_id,
            "rawId": self.encoded_credential_id,
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": client_data.b64,
                "attestationObject": websafe_encode(attestation),
                "transports": ["usb"],
            },
            "clientExtensionResults": {"credProps": {"rk": resident}},
        }

    def get(
        self,
        options: Mapping[str, Any],
        *,
        origin: str | None = None,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """Sign an assertion for `options` (allauth's `request_options`).

        The counter goes up by one unless `sign_count` is given; `origin` and `signing_key` stand in
        for a phishing page and a key that is not the registered one.
        """
        public_key = options["publicKey"]
        allowed = [descriptor["id"] for descriptor in public_key.get("allowCredentials") or []]
        if allowed and self.encoded_credential_id not in allowed:
            raise NoCredentialForRequest(self.encoded_credential_id)
        if sign_count is None:
            self.sign_count += 1
            sign_count = self.sign_count
        client_data = CollectedClientData.create(
            type=CollectedClientData.TYPE.GET,
            challenge=public_key["challenge"],
            origin=origin or self.origin,
        )
        flags = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV
        authenticator_data = AuthenticatorData.create(
            sha256(public_key["rpId"].encode()).digest(), flags, sign_count
        )
        # WebAuthn §6.3.3 step 11: the signature covers authenticatorData || SHA-256(clientDataJSON).
        signature = (signing_key or self.private_key).sign(
            bytes(authenticator_data) + client_data.hash, ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": self.encoded_credential_id,
            "rawId": self.encoded_credential_id,
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": client_data.b64,
                "authenticatorData": websafe_encode(authenticator_data),
                "signature": websafe_encode(signature),
                "userHandle": websafe_encode(self.user_handle) if self.user_handle is not None else None,
            },
            "clientExtensionResults": {},
        }
