"""The city's web service: its poles in standard APIs, a live map and a public page each.

Everything here reads the store that the ingest workers write (city/store.py), on
PostgreSQL or SQLite alike, and writes nothing to it:

- ``sta``: OGC SensorThings API v1.1, read-only (``/v1.1``), query options parsed by
  ``odata`` and bound as parameters, never formatted into SQL;
- ``ngsi``: the same data as NGSI-LD Smart Data Models entities (``/ngsi-ld/v1``);
- ``fleet``: the live state of every pole (ok, alarm, silent, revoked), refreshed from the
  store about once a second, and the alarms as they arrive (server-sent events);
- ``public``: a page per pole, the target of the QR code on its label, and the same as a
  register entry in JSON;
- ``app``: the Starlette application and ``serve`` (uvicorn) that puts them together,
  with the map's static files (``static/``).

``python -m city.cli serve`` runs it; ``pole-sim demo`` runs it beside its poles.
"""
