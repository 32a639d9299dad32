"""Webhooks: one body, one signer and one retry rule for every sender.

* :mod:`.envelope`: the body, ``{"type", "timestamp", "data"}``, and the event id
  sent in the ``webhook-id`` header;
* :mod:`.signing`: Standard Webhooks headers, signed when a secret is configured;
* :mod:`.retry`: which answers are retried, and after how long;
* :mod:`.post`: one request, and what its answer means;
* :mod:`.sender`: the command line's one-shot sender (a few attempts, then done);
* :mod:`.outbox`: the daemon's at-least-once outbox over the store.
"""
