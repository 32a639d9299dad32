"""Structural checks run by ``make lint`` (see the Makefile)."""
