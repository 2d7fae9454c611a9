"""Byte-exact simulated sensors, poles and fleets that run the real ``edge`` code."""
