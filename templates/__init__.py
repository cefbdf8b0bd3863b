"""The message template catalogue and its sandboxed renderer."""
