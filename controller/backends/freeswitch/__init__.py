"""The FreeSWITCH backend: mod_event_socket through greenswitch.

link.py is the only module that imports gevent or greenswitch, and nothing
imports it (through backend.py) unless the config chooses
``backend = "freeswitch"``; every other module here is pure or plain asyncio.
"""
