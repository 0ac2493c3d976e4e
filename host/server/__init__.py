"""`legato serve`: the listener and its drain, one task per connection (handshake, receive and
send loops, resume), live and playback sessions, history queries and the browser page."""

from .server import Server, open_recorder, serve

__all__ = ["Server", "open_recorder", "serve"]
