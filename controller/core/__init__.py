"""The pure core: events in, commands out; no sockets, no clocks, no files."""
