"""Keys at rest: AES-256-GCM under a master key that never enters the database.

The master key is 32 random bytes, from ``CHATGATE_SECRET_KEY`` (base64, URL-safe or
standard, of 32 bytes: 43 or 44 characters, as ``Fernet.generate_key()`` or
``openssl rand -base64 32`` print) or else the key file ``chatgate.key`` next to the
database, made on first run with mode 0600. Two subkeys are derived from it with HKDF:
one encrypts, the other names the master key (its *key id*, 16 hex digits) without
revealing it.

A sealed value is ``format (1 byte) | key id (8) | nonce (12) | ciphertext and tag``.
The associated data is the format, the key id and the row's identity (connection name
and key label), so a ciphertext copied to another row, or under another key id, does
not decrypt. A value sealed under another master key is recognised by its key id and
reported as such, rather than as damage.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from chatgate.errors import ConfigError
from chatgate.store.database import ensure_private_directory, tighten
from chatgate.store.errors import MasterKeyUnavailable

ENV_VARIABLE = "CHATGATE_SECRET_KEY"
KEY_FILE = "chatgate.key"
KEY_BYTES = 32
_FORMAT = 1
_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER = 1 + _ID_BYTES
_BASE64 = re.compile(r"[A-Za-z0-9_+/-]{43}=?")
_FILE_NOTE = (
    "# chatgate's master key: it encrypts the connection keys kept in the store.\n"
    "# Back it up with the database. Without it those keys cannot be read; with it,\n"
    "# anyone holding the database can read them. The same value may be given as\n"
    f"# {ENV_VARIABLE} instead (every instance sharing a PostgreSQL store needs it).\n"
)


class Unsealable(Exception):
    """A sealed value that does not open; the message says why, for a person."""


class Sealer:
    """Seals and opens secrets under one master key, or explains why it has none."""

    def __init__(self, master: bytes | None, source: str, problem: str | None = None) -> None:
        self.source = source  # where the master key came from, for messages
        self.problem = problem
        self.key_id: str | None = None
        self._cipher: AESGCM | None = None
        self._id = b""
        # The pepper gateway keys are hashed under (docs/keys.md): never in the database.
        self.pepper: bytes | None = None
        if master is not None:
            self.pepper = _derive(master, b"chatgate store: gateway key pepper", KEY_BYTES)
            self._id = _derive(master, b"chatgate store: key id", _ID_BYTES)
            self.key_id = self._id.hex()
            self._cipher = AESGCM(_derive(master, b"chatgate store: sealing", KEY_BYTES))

    def __repr__(self) -> str:
        return f"Sealer(key_id={self.key_id!r}, source={self.source!r})"

    def seal(self, plaintext: str, context: bytes) -> bytes:
        """*plaintext* encrypted for the row *context* names."""
        if self._cipher is None:
            raise MasterKeyUnavailable(f"cannot store a key: {self.problem}")
        header = bytes([_FORMAT]) + self._id
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + self._cipher.encrypt(nonce, plaintext.encode(), header + context)

    def open(self, sealed: bytes, context: bytes) -> str:
        """The plaintext of *sealed*, if it belongs to the row *context* names."""
        if self._cipher is None:
            raise Unsealable(f"this store has no master key: {self.problem}")
        if len(sealed) < _HEADER + _NONCE_BYTES + 16 or sealed[0] != _FORMAT:
            raise Unsealable("the stored value is damaged (not a sealed key); enter the key again")
        header = sealed[:_HEADER]
        nonce, body = sealed[_HEADER : _HEADER + _NONCE_BYTES], sealed[_HEADER + _NONCE_BYTES :]
        if header[1:] != self._id:
            raise Unsealable(
                f"it was encrypted with master key {header[1:].hex()}, and this store's master "
                f"key is {self.key_id} (from {self.source}): the key file was lost or replaced, "
                f"or {ENV_VARIABLE} changed. Restore the old master key, or enter this key "
                "again (rotate it)"
            )
        try:
            return self._cipher.decrypt(nonce, body, header + context).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise Unsealable(
                "it does not decrypt with this store's master key although it names it: the "
                "stored value was damaged, or copied from another row; enter the key again"
            ) from None


def key_context(connection: str, label: str) -> bytes:
    """The associated data of a connection's key: its connection and label."""
    return b"key\0" + connection.encode() + b"\0" + label.encode()


def connection_context(connection: str) -> bytes:
    """The associated data of a connection's sealed fields."""
    return b"connection\0" + connection.encode()


def load_sealer(directory: Path, env: Mapping[str, str]) -> tuple[Sealer, bool]:
    """The master key (from *env*, else the key file in *directory*, made if missing), and
    whether this call made the key file."""
    given = env.get(ENV_VARIABLE, "").strip()
    if given:
        try:
            return Sealer(parse_key(given), ENV_VARIABLE), False
        except ValueError as exc:
            raise ConfigError(f"{ENV_VARIABLE}: {exc}") from None
    path = directory / KEY_FILE
    source = f"the key file {path}"
    try:
        return Sealer(read_key_file(path), source), False
    except (FileNotFoundError, NotADirectoryError):
        pass  # made below (or explained, when it cannot be)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = (
            f"{source} cannot be used ({why}). Restore it, or move it aside so that a new "
            "master key is made (the keys stored under the old one must then be entered again)"
        )
        return Sealer(None, source, problem), False
    try:
        master, created = create_key_file(path)
    except OSError as exc:
        problem = f"{source} cannot be made ({exc.strerror}); or set {ENV_VARIABLE}"
        return Sealer(None, source, problem), False
    return Sealer(master, source), created


def parse_key(text: str) -> bytes:
    """The 32 bytes a base64 master key encodes (URL-safe or standard alphabet)."""
    text = text.strip()
    if not _BASE64.fullmatch(text):
        raise ValueError(
            f"a master key is base64 of {KEY_BYTES} random bytes (43 or 44 characters), "
            'e.g. from: python -c "import secrets, base64; '
            'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
        )
    try:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_").rstrip("=") + "=")
    except binascii.Error:
        raise ValueError("a master key is base64 of 32 bytes; this one does not decode") from None


def encode_key(master: bytes) -> str:
    """*master* as the URL-safe base64 the key file and the variable hold."""
    return base64.urlsafe_b64encode(master).decode()


def read_key_file(path: Path) -> bytes:
    """The master key in the key file at *path* (its comment lines skipped)."""
    lines = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    values = [line for line in lines if line and not line.startswith("#")]
    if len(values) != 1:
        raise ValueError(f"it holds {len(values)} keys where it should hold one")
    tighten(path)
    return parse_key(values[0])


def create_key_file(path: Path) -> tuple[bytes, bool]:
    """A new master key written to *path* (mode 0600), or the one another process wrote
    there first; and whether it is the new one."""
    ensure_private_directory(path.parent)
    master = secrets.token_bytes(KEY_BYTES)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    # Written whole under a private name, then linked into place: a process that opens
    # the store at the same moment reads a complete file or none, and a link never
    # replaces a key file that is already there.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(f"{_FILE_NOTE}{encode_key(master)}\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return read_key_file(path), False
    finally:
        temporary.unlink(missing_ok=True)
    return master, True


def _derive(master: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=purpose).derive(master)
