"""The composition root: what the running service owns (`runtime`: settings, database, event bus, prices,
the enforcer) and every periodic job it runs (`schedule`). It imports the domain packages; they refer to
`Runtime` for type checking only, so there is no import cycle at run time (import-linter)."""
