"""The hardening tests import their helpers from ``hardlib`` beside this file (importlib import mode)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
