"""Compliance rules and policy: pure content rules and state rules (no web or queue imports)."""
