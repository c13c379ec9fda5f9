"""Where the real test data lives: ``$HASHLAB_SHARED_DATA``, else ``shared/data`` beside the
checkout (the layout CI uses), else ``/work/shared/data``."""

import os
from pathlib import Path


def _shared_data() -> Path:
    if os.environ.get("HASHLAB_SHARED_DATA"):
        return Path(os.environ["HASHLAB_SHARED_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


SHARED_DATA = _shared_data()
