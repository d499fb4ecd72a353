"""get_secret as Phase's backend implements it (backend/utils/secrets.py):
NAME_FILE wins when that file exists, its content stripped of surrounding
whitespace; a file that is missing or cannot be read falls back to the
plain NAME variable, silently."""
import os
from pathlib import Path


def get_secret(key):
    file_path = os.getenv(key + "_FILE")
    if file_path:
        path = Path(file_path)
        if path.exists():
            try:
                return path.read_text().strip()
            except (PermissionError, OSError):
                pass
    return os.getenv(key, None)
