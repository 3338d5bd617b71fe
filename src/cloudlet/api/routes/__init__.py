"""One thin module per endpoint group: parse, call the gateway, shape the response."""
