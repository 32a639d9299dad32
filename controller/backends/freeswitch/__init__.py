"""The FreeSWITCH backend: mod_event_socket through greenswitch.

events.py and actions.py are pure (no I/O, no gevent); backend.py is the only
module that imports gevent or greenswitch, and nothing imports it unless the
config chooses ``backend = "freeswitch"``.
"""
