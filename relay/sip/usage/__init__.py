"""Dialog usages: what runs inside a dialog (the INVITE session, its re-INVITEs, session timers)."""
