"""``sslrobot run``: the whole loop, from nothing to a report, resumable stage by stage."""
