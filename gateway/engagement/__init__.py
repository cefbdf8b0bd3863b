"""Engagement: tracked-link clicks, conversions, complaints and campaign reports."""
