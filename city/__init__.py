"""The city's side at city scale: verifier workers on a shared subscription, one store.

``city.cli ingest`` runs N worker processes (city/ingest.py) on one MQTT 5 shared
subscription; each verifies with ``provisioning.verifier`` and writes to a store
(city/store.py: PostgreSQL with PostGIS, or one SQLite file) that decides acceptance,
holds the keys every worker uses and answers the city's queries (city/queries.py).
Deployment, commands and figures: docs/city.md.

This package may import ``edge`` and ``provisioning``; they never import it.
"""
