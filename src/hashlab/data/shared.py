"""Where the project's shared real data sets live when a command is not told.

``$HASHLAB_SHARED_DATA`` when set; else ``shared/data`` beside the checkout (the layout of
this project's machines and CI: ``../shared/data`` from the repository root); else
``../shared/data`` from the working directory. Benchmark modules use it for their
``--data-root`` defaults so that no machine's absolute path is baked in.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_shared_data() -> Path:
    if os.environ.get("HASHLAB_SHARED_DATA"):
        return Path(os.environ["HASHLAB_SHARED_DATA"])
    # src/hashlab/data/shared.py -> the checkout is parents[3]; shared/ sits beside it
    beside_checkout = Path(__file__).resolve().parents[4] / "shared" / "data"
    if beside_checkout.is_dir():
        return beside_checkout
    return Path("../shared/data")
