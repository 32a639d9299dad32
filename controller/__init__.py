"""callconnect: a self-hosted call-connect controller for Asterisk and FreeSWITCH."""

__version__ = "0.1.0"
