"""Developer tools run from the checkout (``python -m tools.docgen``); not installed."""
