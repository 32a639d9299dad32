"""The command-line client for the daemon's REST API: ``callconnect calls``,
``groups`` and ``dnc``, and ``callconnect call --url`` (see commands.py)."""
