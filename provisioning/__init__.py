"""Pole identity from birth to retirement, and the city's verifier of what arrives."""
