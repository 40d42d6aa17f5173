"""The ceiling: a trivial Flask app served by ``stepup serve``'s own gunicorn set-up.

    python -m bench.trivial PORT

Same server code path (``bridge.server.run_gunicorn``), same worker count and options, same
logging set-up, so the only difference from the bridge is the application itself.
"""

from __future__ import annotations

import sys

from flask import Flask

from bridge import logs
from bridge.server import run_gunicorn
from bridge.settings import load_settings

app = Flask(__name__)


@app.get("/")
def hello():
    return "ok"


if __name__ == "__main__":
    settings = load_settings()
    logs.configure()
    run_gunicorn(app, "127.0.0.1", int(sys.argv[1]), settings.workers, settings.timeout)
