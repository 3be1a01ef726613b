"""Chat channels: the port (`channels.port`), one adapter per channel, and the registry
(`channels.registry`) that connections and the listener derive from."""
