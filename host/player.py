"""``legato.player`` as documented before the client moved to ``legato.client``."""

from .client.player import Player, PlayerError, open_player

__all__ = ["Player", "PlayerError", "open_player"]
