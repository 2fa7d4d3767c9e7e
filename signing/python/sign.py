"""Signing identities on your backend with Python (standard library only).

    python3 sign.py hmac <secret> <utf8|hex> <identifier>
    python3 sign.py timestamped <secret> <identifier> <unix_ts>
    python3 sign.py jwt <secret> <app_id> <email> <name> <iat> <lifetime_secs>   (name "" = no name claim)

tests/it/signing_snippets.rs runs this file and compares its output with tower_identity's signer.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time


def sign_identifier(secret: str, identifier: str, encoding: str = "utf8") -> str:
    """HMAC-SHA256 of the identifier, 64 lowercase hex characters. The secret is used as
    text (its UTF-8 bytes), or hex-decoded first when your vendor hands out a hex secret."""
    key = bytes.fromhex(secret) if encoding == "hex" else secret.encode()
    return hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()


def sign_timestamped(secret: str, identifier: str, ts=None) -> str:
    """Timestamped: <hex of HMAC-SHA256(secret, "{identifier}-{ts}")>-<ts>."""
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{identifier}-{ts}".encode(), hashlib.sha256).hexdigest()
    return f"{mac}-{ts}"


def chat_widget_jwt(secret: str, app_id: str, email: str, name=None, iat=None, lifetime=600) -> str:
    """A short-lived HS256 JWT. The secret is used exactly as given (never hex-decoded).
    With PyJWT instead: jwt.encode(claims, secret, algorithm="HS256")."""
    iat = int(time.time()) if iat is None else iat
    claims = {"email": email, "aud": app_id, "iat": iat, "exp": iat + lifetime}
    if name:
        claims["name"] = name

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def part(obj) -> str:
        return b64url(json.dumps(obj, separators=(",", ":")).encode())

    signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(claims)
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def main(argv):
    # Arguments are UTF-8 whatever the locale says.
    command, *args = [os.fsencode(a).decode("utf-8") for a in argv] or [""]
    arity = {"hmac": 3, "timestamped": 3, "jwt": 6}.get(command)
    if arity is None or len(args) != arity:
        raise ValueError("usage: sign.py hmac|timestamped|jwt ... (see the top of this file)")
    if command == "hmac":
        secret, encoding, identifier = args
        if encoding not in ("utf8", "hex"):
            raise ValueError("encoding must be utf8 or hex")
        return sign_identifier(secret, identifier, encoding)
    if command == "timestamped":
        secret, identifier, ts = args
        return sign_timestamped(secret, identifier, unix_secs(ts))
    secret, app_id, email, name, iat, lifetime = args
    return chat_widget_jwt(secret, app_id, email, name, unix_secs(iat), unix_secs(lifetime))


def unix_secs(s: str) -> int:
    if not s.isascii() or not s.isdigit():
        raise ValueError(f"not a unix time in seconds: {s}")
    return int(s)


if __name__ == "__main__":
    try:
        print(main(sys.argv[1:]))
    except ValueError as err:
        sys.exit(f"error: {err}")
