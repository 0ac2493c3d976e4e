"""Who a client is: a signed token (a JWT) names its user, its expiry and what it may do.

With ``[auth]`` off (no key), every client is who its ``start`` says and may do everything, as
on a practice machine on 127.0.0.1. With a key, a client presents a token: HS256 with a shared
secret (``legato token issue`` signs them), or RS256/ES256 from an identity provider whose
public key the server holds. The user is the ``sub`` claim; scopes come from ``scope`` (space
separated, as OAuth writes them) or ``scopes`` (a list); a token with neither may do what a
student does (practice, playback, their own history), never ``admin``.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import attrs
import jwt

from ..config.settings import AUTH_SCOPES, AuthSettings
from ..errors import LegatoError

STUDENT_SCOPES = frozenset({"practice", "playback", "history"})
"""What a token that names no scopes may do."""
ASYMMETRIC = ["RS256", "ES256"]
SYMMETRIC = ["HS256"]
MAX_TOKEN_CHARS = 8192


class AuthError(Exception):
    """A token that does not let its bearer in: the reason, for the close frame."""


@attrs.frozen
class Identity:
    """A client's user and scopes; ``verified`` is False when auth is off (the user is then
    whatever ``start`` says, and everything is allowed)."""

    user: str | None
    scopes: frozenset[str]
    verified: bool

    def allows(self, scope: str) -> bool:
        return not self.verified or "admin" in self.scopes or scope in self.scopes

    @property
    def admin(self) -> bool:
        return self.verified and "admin" in self.scopes


ANYONE = Identity(None, frozenset(AUTH_SCOPES), verified=False)


class Authenticator:
    """Checks tokens against one key: a secret (HS256) or a public key (RS256/ES256)."""

    def __init__(
        self,
        key: bytes,
        algorithms: list[str],
        issuer: str = "",
        audience: str = "",
        leeway_s: float = 30.0,
    ) -> None:
        self._key = key
        self._algorithms = algorithms
        self._issuer = issuer or None
        self._audience = audience or None
        self._leeway = leeway_s

    @classmethod
    def from_settings(cls, auth: AuthSettings, base: Path) -> Authenticator | None:
        """The authenticator ``[auth]`` asks for (None: auth is off); file paths are relative
        to ``base`` (the config file's folder). A missing or empty key is a LegatoError."""
        if not auth.enabled:
            return None
        if auth.public_key_file:
            key, algorithms = (
                read_key(base / auth.public_key_file, "[auth] public_key_file"),
                ASYMMETRIC,
            )
        elif auth.secret_file:
            key, algorithms = read_key(base / auth.secret_file, "[auth] secret_file"), SYMMETRIC
        else:
            value = os.environ.get(auth.secret_env, "")
            if not value.strip():
                raise LegatoError(
                    f"[auth] secret_env: environment variable {auth.secret_env} is unset or empty"
                )
            key, algorithms = value.strip().encode(), SYMMETRIC
        return cls(key, algorithms, auth.issuer, auth.audience, auth.leeway_s)

    def verify(self, token: str) -> Identity:
        """The identity a token proves, or AuthError saying why it proves none."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise AuthError("the token is malformed")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError("the token's signature is not valid for this server") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidAlgorithmError:
            allowed = ", ".join(self._algorithms)
            raise AuthError(
                f"the token is not signed with an accepted algorithm ({allowed})"
            ) from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"the token is not valid: {exc}") from None
        user = claims["sub"]
        if not isinstance(user, str) or not 0 < len(user) <= 200:
            raise AuthError("the token's 'sub' (the user) must be a string of 1 to 200 characters")
        return Identity(user, _scopes(claims), verified=True)


def read_key(path: Path, setting: str) -> bytes:
    """A key file's contents (surrounding whitespace dropped); LegatoError naming ``setting``
    when it cannot be read or is empty."""
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise LegatoError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    if not key:
        raise LegatoError(f"{setting}: {path} is empty")
    return key


def _scopes(claims: dict) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scopes"))
    if raw is None:
        return STUDENT_SCOPES
    names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
    return frozenset(n for n in names if n in AUTH_SCOPES)


def issue_token(
    secret: bytes,
    user: str,
    scopes: Sequence[str] = (),
    ttl_s: float = 86400.0,
    issuer: str = "",
    audience: str = "",
) -> str:
    """An HS256 token for ``user`` valid ``ttl_s`` seconds (no scopes: a student's)."""
    now = int(time.time())
    claims: dict = {"sub": user, "iat": now, "exp": now + max(1, int(ttl_s))}
    if scopes:
        claims["scope"] = " ".join(scopes)
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer_token(headers: dict[str, str], target: str) -> str | None:
    """The token an upgrade request carries: ``Authorization: Bearer T``, else a ``token``
    query parameter (browsers cannot set headers on a WebSocket)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    found = urllib.parse.parse_qs(target.partition("?")[2]).get("token")
    return found[0] if found else None
