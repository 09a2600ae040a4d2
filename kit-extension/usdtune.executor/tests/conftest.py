"""The executor's unit tests: its pure parts, on in-memory stages, without a daemon. They run
on the executor environment's Python (`usdtune setup --dev`), as the end-to-end suite does."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
