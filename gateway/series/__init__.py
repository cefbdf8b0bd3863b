"""Reminder series: definitions, starting and ending series, and releasing their due steps."""
