"""An Event Socket peer: FreeSWITCH as the controller sees it, on loopback.

The FreeSWITCH backend runs against a real FreeSWITCH 1.10.12 in the lab
(tests/fslab); this peer is for what a real switch cannot be made to show
(split and malformed frames, -ERR on demand, a silent link) and for the
backend's fast tests, so it follows what the lab's switch showed (see the
notes marked "seen on FreeSWITCH 1.10.12"). It is an asyncio TCP server on
127.0.0.1 (a random port) that speaks mod_event_socket's inbound protocol and
simulates the channels behind it, with the real event names and headers, and
phones chosen by the dialed number (the lab's number plan,
``sip-lab/callconnect.toml``):

========  ==================================================================
``01xx``  180, answers after 0.5 s, stays until hung up
``02xx``  the same
``03xx``  180, never answers (the originate/bridge timeout ends it)
``04xx``  486 Busy Here at once (USER_BUSY, no 180)
``05xx``  180, 603 Decline after 0.3 s (CALL_REJECTED)
``06xx``  180, answers after 0.5 s, hangs up (BYE) 4 s after answering
========  ==================================================================

and for a SIP URI's user part or a directory user's name (``user/NAME``):
``busy``, ``reject``, ``no-answer``, ``answer``, as the lab's SIPp phones do,
or any of ``answer-after-<ms>``, ``hangup-after-<ms>`` and ``press-<key>``
(``0``-``9``, ``star``, ``hash``: the key it sends, once, 0.1 s after a
confirm prompt ends). ``user/NAME`` is a directory user (every name, unless
``directory`` lists them) registered unless named ``offline-*``.

Where each shape comes from (FreeSWITCH 1.10 source and documentation):

* Framing, mod_event_socket.c: ``Content-Type: auth/request`` on connect;
  ``auth`` answered ``+OK accepted`` or ``-ERR invalid`` and then a
  ``text/disconnect-notice`` and close; ``command/reply`` with
  ``Reply-Text``; ``api/response`` with ``Content-Length``; ``bgapi`` answered
  ``Reply-Text: +OK Job-UUID: <id>`` plus a ``Job-UUID`` header (a client's own
  ``Job-UUID`` header is kept, up to 36 characters) and, when the job is done,
  a ``BACKGROUND_JOB`` event whose body is the result; events framed as
  ``Content-Length: N`` then ``Content-Type: text/event-plain`` (or
  ``-json``); ``filter <header> <value>`` lets through only events matching
  any filter (header names and values compared case-insensitively),
  ``filter delete``; ``event plain|json <names>``; ``sendmsg <uuid>`` with
  ``call-command: execute``; unknown commands ``-ERR command not found``;
  ``text/rude-rejection`` for a host the ACL refuses.
* Plain event text, switch_event.c switch_event_serialize(): ``Name: value``
  lines with the value URL-encoded (switch_url_encode: control characters,
  non-ASCII and `` #%&+:;<=>?@[\\]^`{|}"`` as %XX), an empty value written
  ``_undef_``, and an event body as ``Content-Length`` + blank line + body.
* Channel headers, switch_channel.c switch_channel_event_set_basic_data()
  (Channel-State, Channel-Call-State, Unique-ID, Answer-State, Hangup-Cause,
  Caller-*/Other-Leg-* profile fields) and the list of events that carry
  ``variable_*`` headers (CHANNEL_CREATE, _PROGRESS, _ANSWER, _PARK, _BRIDGE,
  _HANGUP, _HANGUP_COMPLETE, _EXECUTE(_COMPLETE), PLAYBACK_*, RECORD_*, ...);
  compared with a CHANNEL_CREATE dump from a real FreeSWITCH
  (github.com/Datchuthanh98/VoIP_CallCenter, esl-event/check.js).
* Hangups, switch_channel_perform_hangup(): CHANNEL_HANGUP carries
  ``Hangup-Cause`` but not yet ``variable_hangup_cause_q850`` (set in the
  hangup state handler, switch_core_state_machine.c, as
  switch_channel_cause_q850(): the cause if <= 127, else 16);
  CHANNEL_HANGUP_COMPLETE carries both. ``sip_hangup_disposition``: mod_sofia
  sets ``recv_refuse`` before hanging up (so CHANNEL_HANGUP has it), but
  ``recv_bye`` only after switch_channel_hangup() returns
  (sofia_handle_sip_i_bye), and ``send_bye``/``send_cancel`` in its on_hangup
  handler: only CHANNEL_HANGUP_COMPLETE has those. On a received BYE,
  CHANNEL_HANGUP has ``sip_term_status`` (200) instead, set before the hangup;
  as seen on FreeSWITCH 1.10.12 in the lab.
* Applications, mod_dptools and switch_ivr: CHANNEL_EXECUTE and
  CHANNEL_EXECUTE_COMPLETE around every application (Application,
  Application-Data, Application-Response); ``park`` raises CHANNEL_PARK and
  honours ``park_timeout=<s>[:<cause>]`` (Channel Variables Catalog);
  ``playback`` raises PLAYBACK_START/PLAYBACK_STOP with Playback-File-Path and
  Playback-Status (done/break), lasting the WAV file's real length, and answers
  FILE PLAYED or FILE NOT FOUND; ``bridge`` dials with the ``{var=value}``
  list (origination_uuid, originate_timeout, execute_on_answer), raises
  CHANNEL_BRIDGE/UNBRIDGE (answering a caller not answered yet first), sets
  originate_disposition and DIALSTATUS when it fails, hangs the caller up
  unless continue_on_fail=true, and hangs it up
  after a bridge when hangup_after_bridge=true; ``sched_hangup +N <cause>``;
  applications sent with ``sendmsg`` while the channel is parked run one after
  the other. An originated channel answers HANDOVER_SECONDS before it runs
  its application, and a ``playback`` sent to it meanwhile fails at once
  (``PLAYBACK ERROR``, no PLAYBACK_START/STOP), as seen on FreeSWITCH
  1.10.12 in the lab.
* Dialing, switch_ivr_originate.c switch_ivr_originate(): ``{vars}`` for
  every leg, then targets, ``|`` one after the other (a timeout stops the
  list unless originate_continue_on_timeout), ``,`` all at once, each with
  ``[vars]`` of its own over the ``{...}`` ones (origination_uuid per leg);
  group_confirm_* are also taken from the caller's variables. The first leg to
  answer wins; the others are hung up with LOSE_RACE (and
  ``group_dial_status=loser``) when there were several, with NO_ANSWER at
  originate_timeout, ORIGINATOR_CANCEL if the caller goes; a leg's
  ``leg_timeout`` hangs it up with ALLOTTED_TIMEOUT (check_per_channel_timeouts)
  unless group_confirm_cancel_timeout stopped those timers. A dial that fails
  takes the first leg's cause (dial order), or the last creation failure if
  no leg was created; on success ``originate_disposition`` is ``call
  accepted``; DIALSTATUS as that function sets it. With group_confirm_key
  (collect_thread_run()), a leg that answers is tagged and must confirm: with
  the key ``exec``, group_confirm_file is ``<app> <args>`` run on the leg,
  which wins if still up after it; otherwise group_confirm_file is played
  (PLAYBACK_START/STOP on the leg) and one key read for
  group_confirm_read_timeout ms (default 5000): the key wins, a wrong key or
  none plays the file and reads again for as long as the leg is up. The DTMF
  event comes when the digit is read (switch_channel_dequeue_dtmf: DTMF-Digit,
  DTMF-Duration; DTMF-Source in newer releases), with no ``variable_*``.
* Incoming calls (``call_in``), as seen on FreeSWITCH 1.10.12 in the lab: an
  inbound channel runs dialplans/freeswitch/callconnect_inbound.xml (``set``,
  ``sched_hangup``, ``ring_ready``, ``event`` raising ``CUSTOM`` with
  ``Event-Subclass`` and the channel's variables, ``park``); a connection
  gets a ``CUSTOM`` event only for a subclass named after ``CUSTOM`` in its
  ``event`` command. Its caller (:class:`Caller`) presses keys once
  answered and may hang up; the SIP statuses it gets are kept (180 from
  ring_ready, 183 from pre_answer, 200 from answer, and for a hangup before
  the answer mod_sofia's hangup_cause_to_sip()). ``read`` (switch_ivr_read:
  a key stops the prompt and counts, terminators, read_terminator_used),
  ``record_session``/``stop_record_session``, ``unset``, ``uuid_getvar``.
  ``park`` takes a key it gets and drops it (its DTMF event). What is sent
  behind a ``playback``, ``read`` or ``sleep`` runs at once, inside it,
  unless that one came with ``event-lock: true`` (uuid_broadcast's do).
* Directory users, mod_dptools user_outgoing_channel(): an unknown user fails
  with SUBSCRIBER_ABSENT, an unregistered one with USER_NOT_REGISTERED (its
  contact is ``error/user_not_registered``), both with no channel; the
  channel carries dialed_user, dialed_domain and ``presence_id`` =
  ``<user>@<domain>`` (the default domain: vars.xml's $${domain}).
* ``execute_on_answer`` and ``execute_on_pre_bridge``,
  switch_channel_execute_on(): every variable whose name starts with it is
  ``<app> <args>`` run at once (CHANNEL_EXECUTE/_COMPLETE as any
  application), on answer, or by each side's bridge thread when media flows
  (switch_ivr_bridge.c); ``api_before_bridge`` (switch_channel_api_on) is an
  API command that bridge thread runs on its own channel.
* Applications sent (``sendmsg``) to a channel whose ``bridge`` rings run at
  once, inside the bridge: switch_ivr_originate.c parses the caller's queued
  messages while it waits (switch_ivr_parse_all_events), so their
  CHANNEL_EXECUTE_COMPLETE comes before the bridge's; seen on FreeSWITCH
  1.10.12 in the lab.
* The scheduler, switch_ivr_async.c and mod_commands: ``sched_hangup``
  (application ``+N [cause]``, API ``+N <uuid> [cause]``, ``-ERR No such
  channel!``) adds a task to the group named after the channel, which keeps
  the channel id in a 37-byte buffer (struct hangup_helper): a longer id is
  cut to 36 characters and the hangup then finds no channel; ``sched_del
  <group>`` answers ``+OK Deleted: <n>``.
* Hold music, mod_commands ``uuid_displace <uuid> start|stop <file> [limit]
  [mux]`` (``+OK Success``, ``-ERR Cannot locate session!``, ``-ERR Cannot
  stop displace session!``) and mod_dptools ``displace_session <file>
  [flags]``: a media bug, no audio is simulated.
* API commands, mod_commands: ``originate <dial string> &app(args)``
  (``+OK <uuid>`` or ``-ERR <CAUSE>``: NO_ANSWER at originate_timeout,
  USER_BUSY, CALL_REJECTED, INVALID_GATEWAY for an unknown gateway, with no
  channel), ``uuid_broadcast <uuid> <path>|<app>[!<cause>]::<args> aleg``
  (the scheduler API page documents ``playback!normal_clearing::<path>``),
  ``uuid_kill`` (``-ERR No such channel!``), ``uuid_record <uuid> start
  <path>`` (RECORD_START/RECORD_STOP, and a real WAV file is written),
  ``uuid_setvar``, ``uuid_setvar_multi``, ``show channels [as json]`` (with
  presence_id).

The peer can also split its writes into random small TCP writes, inject raw
bytes (malformed frames), hold the reply to a command or to an application's
sendmsg (as a FreeSWITCH busy with it would: one command at a time per
connection), refuse a command, refuse the connection by ACL, and drop every
connection at once. It keeps the pieces the controller's bytes came in
(``PeerConnection.received``), and, as a switch reading its socket, still
reads what a controller that died sent before its connection was reset.

The package: wire.py (names, numbers and text formats), phones.py, channel.py,
connection.py (one Event Socket connection), switch.py (:class:`EslPeer`, whose
API commands, calls and applications are api_commands.py, calls.py and
applications.py) and scenarios.py.

``python -m tests.esl.peer record tests/fixtures/esl`` runs every lab scenario
against a peer through the real controller and writes what the controller
received, byte for byte, as the translator's fixtures.
"""

from __future__ import annotations

from .channel import Channel
from .connection import PeerConnection
from .phones import Caller
from .scenarios import Listener, freeswitch_controller, scenario_call
from .switch import EslPeer
from .wire import write_recording

__all__ = ["Caller", "Channel", "EslPeer", "Listener", "PeerConnection",
           "freeswitch_controller", "scenario_call", "write_recording"]
