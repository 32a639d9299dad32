"""Switch backends. Each is an adapter between the pure call core and one
switch's wire protocol, behind the :class:`Backend` interface."""
