"""One module per channel: each turns its provider's webhook into normalized inbound messages."""
