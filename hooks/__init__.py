"""Claude Code hooks: the entry point (`sm hook <event>`) and the settings template."""
