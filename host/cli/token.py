"""`legato token`: the keys and access tokens of a server that requires them (`[auth]`).
`secret FILE` writes a new random HS256 key readable by its owner only; `issue` prints a token
for a user, signed with that key."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from ..config.settings import AUTH_SCOPES
from ..errors import LegatoError
from .common import Subparsers

SECRET_BYTES = 32


def add_parser(subparsers: Subparsers) -> None:
    """Declare `legato token secret` and `legato token issue`."""
    p = subparsers.add_parser("token", help="make an auth key, or issue access tokens")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="{secret,issue}")
    secret = verbs.add_parser("secret", help="write a new random HS256 key to FILE (mode 600)")
    secret.add_argument("file", metavar="FILE")
    secret.add_argument("--force", action="store_true", help="replace an existing file")
    secret.set_defaults(func=write_secret)
    issue = verbs.add_parser("issue", help="print an access token for a user")
    issue.add_argument("--secret-file", required=True, metavar="FILE", help="the server's key")
    issue.add_argument("--user", required=True, help="the user the token names (its `sub`)")
    issue.add_argument(
        "--scope",
        action="append",
        choices=AUTH_SCOPES,
        help="what the token allows (repeat for several; default: practice, playback and the"
        " user's own history)",
    )
    issue.add_argument(
        "--ttl", type=float, default=86400.0, metavar="SECONDS", help="lifetime (default 1 day)"
    )
    issue.add_argument("--issuer", default="", help="`iss` claim ([auth] issuer)")
    issue.add_argument("--audience", default="", help="`aud` claim ([auth] audience)")
    issue.set_defaults(func=issue_token_command)


def write_secret(args: argparse.Namespace) -> int:
    path = Path(args.file)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise LegatoError(f"{path} exists; give --force to replace it") from None
    except OSError as exc:
        raise LegatoError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
    print(f"wrote a new key to {path}; serve with: legato serve --auth-secret-file {path}")
    return 0


def issue_token_command(args: argparse.Namespace) -> int:
    from ..server.auth import issue_token, read_key

    if args.ttl <= 0:
        raise LegatoError(f"--ttl must be positive, got {args.ttl}")
    if not 0 < len(args.user) <= 200:
        raise LegatoError("--user must be 1 to 200 characters")
    key = read_key(Path(args.secret_file), "--secret-file")
    print(issue_token(key, args.user, args.scope or (), args.ttl, args.issuer, args.audience))
    return 0
