"""Django settings for the mirror of Antenna's schema.

The database comes from ``DATABASE_URL``; without it the pytest plugin fills in an embedded PostgreSQL
before the first connection is made.  Time semantics are Antenna's: naive wall-clock times in
America/New_York (``USE_TZ = False``), so the session time zone matches what Antenna writes.
"""

import os

from antenna_invariants.connection import django_database
from antenna_invariants.errors import ConfigError

SECRET_KEY = "antenna-invariants-not-a-web-app"
INSTALLED_APPS = ["antenna_invariants.mirror"]
try:
    DATABASES = {"default": django_database(os.environ.get("DATABASE_URL", ""))}
except ConfigError:  # the plugin reports it as one line (exit 4) when it resolves the database
    DATABASES = {"default": django_database("")}
USE_TZ = False
TIME_ZONE = "America/New_York"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
