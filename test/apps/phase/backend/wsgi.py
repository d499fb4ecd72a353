"""A WSGI app whose settings are read once, at import, the way Django reads
Phase's settings.py in each gunicorn worker (the app is not preloaded, so
a SIGHUP to the master makes new workers read them again)."""
import json
import os

from backend.secrets import get_secret

# The variables to read, as settings.py reads them: PHASE_TEST_SETTINGS
# lists them (comma-separated).
NAMES = [n for n in os.environ.get("PHASE_TEST_SETTINGS", "SECRET_KEY").split(",") if n]
SETTINGS = {name: get_secret(name) for name in NAMES}
BODY = json.dumps({"pid": os.getpid(), "settings": SETTINGS}).encode()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]
