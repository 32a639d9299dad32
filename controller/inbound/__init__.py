"""Inbound calls: the numbers the controller answers (the config's and the
API's), and what happens to a call that arrives at one of them."""
