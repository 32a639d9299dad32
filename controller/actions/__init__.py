"""Actions on a live call: their JSON spec, and each made ready for the switch."""
