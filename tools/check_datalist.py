# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Check a datalist the way a bundle's pre-flight step does, without training (``common.data.preflight``).

Run from the repository root::

    python tools/check_datalist.py data/qata/datalist.json
    python tools/check_datalist.py DATALIST --config_file bundles/lvit/configs/train.json --splits training test

With ``--config_file`` the rules are those of the bundle's ``train#deterministic_transforms`` (its
``EnsureNumChannelsd``, ``CheckSameSpatialShaped`` and ``BinarizeMaskd`` arguments). Exit status 0 when every entry
is fine, 1 with every problem listed (split, entry index, key, file, what is wrong).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.data.preflight import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
