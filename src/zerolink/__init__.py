"""zerolink: an XMPP server for constrained links (XEP-0361 zero-handshake S2S)."""

__version__ = "0.1.0"
