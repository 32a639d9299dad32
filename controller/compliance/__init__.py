"""Compliance guards on the numbers a call reaches: a do-not-call list
(:mod:`.dnc`), calling windows in each number's own time zone
(:mod:`.windows`) and a cap on calls to a number per day, all applied by
:class:`controller.compliance.guard.Compliance`; scheduled calls wait for their
window in the daemon's :mod:`controller.daemon.scheduler`. Limits per trunk and per agent are admission
control: :mod:`controller.daemon.admission`.
"""
