"""The alert engine (DESIGN §7–8): pure rules over the device folds, alerts as
aggregates with their own events, one open alert per (device, rule, subject)."""
