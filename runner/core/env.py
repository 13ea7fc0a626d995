"""Process-wide defaults that must be set before Ultralytics is imported.

Ultralytics otherwise writes settings under the user's home, tries to pip-install missing
packages at run time and reaches the network for fonts and weights. A user who really wants
online downloads sets YOLO_OFFLINE=0 explicitly.
"""

import os
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(os.environ.get("VIGIE_VAR_DIR", "var")).resolve() / "ultralytics"))


def is_offline() -> bool:
    """True unless the operator explicitly allowed downloads (YOLO_OFFLINE=0/false).

    Returns:
        False when $YOLO_OFFLINE is 0, false, no or blank (any case); True otherwise, unset included.
    """
    return os.environ.get("YOLO_OFFLINE", "1").strip().lower() not in {"0", "false", "no", ""}
