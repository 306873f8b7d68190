"""API keys, legacy passphrases and source networks: their shape, hashing and checks.

A key is `tc_<prefix>_<secret>`: the prefix finds the client (it is not secret and is
shown in the admin), the secret is 32 random bytes. Only a SHA-256 of the whole key is
stored. A fast hash is right for a key this random; a password hasher would add
milliseconds to every API call and no safety.
"""

import hashlib
import hmac
import ipaddress
import re
import secrets
import string
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from django.contrib.auth.hashers import check_password, make_password

PREFIX_LENGTH = 8
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_BYTES = 32
_KEY_SHAPE = re.compile(r"tc_([a-z0-9]{8})_[A-Za-z0-9_-]{43}")
# Longer input is refused before any regex or hash work is spent on it.
MAX_KEY_LENGTH = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Legacy passphrases this process verified lately, newest last, each kept as a digest of
# the passphrase with its stored hash rather than as the passphrase itself.
_VERIFIED_MAX = 1024
_verified: OrderedDict[bytes, None] = OrderedDict()
_verified_lock = threading.Lock()


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: show `key` once, store `prefix` and `digest`."""

    prefix: str
    digest: str
    key: str = field(repr=False)


def key_generate() -> NewKey:
    """Make a new random API key."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    key = f"tc_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    return NewKey(prefix=prefix, digest=key_digest(key), key=key)


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key, or None when the key has the wrong shape."""
    if len(key) > MAX_KEY_LENGTH:
        return None
    match = _KEY_SHAPE.fullmatch(key)
    return match.group(1) if match else None


def bearer_credential(authorization: str) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header, or None."""
    scheme, _, credential = authorization.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def key_digest(key: str) -> str:
    """The SHA-256 hex digest stored for a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, digest: str) -> bool:
    """Whether `key` hashes to the stored digest, compared in constant time."""
    return hmac.compare_digest(key_digest(key), digest)


def constant_time_equal(left: str, right: str) -> bool:
    """Compare two strings without revealing where they differ."""
    return hmac.compare_digest(left.encode(), right.encode())


def passphrase_hash(passphrase: str) -> str:
    """A legacy passphrase hashed with Django's password hasher (PBKDF2 by default).

    Unlike a key, a passphrase is chosen by a person: a fast hash would fall to a
    dictionary attack on a copy of the database.
    """
    return make_password(passphrase)


def passphrase_matches(passphrase: str, stored: str) -> bool:
    """Whether a legacy passphrase matches its stored hash, with at most one hash computed.

    A blank `stored` (no client to check against) costs one hash all the same, so that a
    refusal takes as long whether a client was found or not. A slow hash per request would
    cost the legacy endpoint milliseconds per call, so each process remembers passphrases
    it verified lately (a changed passphrase has a new stored hash); only successes are
    remembered, so failed attempts cannot push them out.
    """
    if not stored:
        make_password(passphrase)  # the work of a check, thrown away
        return False
    remembered = hashlib.sha256(f"{stored}\0{passphrase}".encode()).digest()
    with _verified_lock:
        if remembered in _verified:
            _verified.move_to_end(remembered)
            return True
    if not check_password(passphrase, stored):
        return False
    with _verified_lock:
        _verified[remembered] = None
        if len(_verified) > _VERIFIED_MAX:
            _verified.popitem(last=False)
    return True


def networks_parse(text: str) -> list[Network]:
    """Parse CIDRs separated by commas, spaces or lines; raise ValueError naming a bad one."""
    networks = []
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{entry!r} is not a network: write an address or a CIDR "
                "such as 203.0.113.0/24 or 2001:db8::/32."
            ) from None
    return networks


def address_allowed(address: str | None, networks: list[Network]) -> bool:
    """Whether a source address lies in one of the networks (no networks: any address)."""
    if not networks:
        return True
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def address_normalise(text: str) -> str | None:
    """The address in canonical form, or None when the text is not an IP address."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None
