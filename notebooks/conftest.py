"""nbval runs of the notebooks (``make test``): shrink the work through the environment.

Every notebook's ``parameters`` cell reads its defaults from ``DMT_NB_*`` variables, so
the same notebooks that ``make notebooks`` executes at full size run here in seconds.
Values already set in the environment win (e.g. ``DMT_NB_MAX_STEPS=50 make test``).
Kernels inherit this process's environment when nbval starts them.
"""

from __future__ import annotations

import os
import tempfile

QUICK = {
    "DMT_NB_MAX_STEPS": "12",  # 06: optimisation steps
    "DMT_NB_TIME_BUDGET": "60",  # 06: seconds, an upper bound next to the steps
    "DMT_NB_TRAIN_GROUPS": "12",  # 06: synthetic training groups
    "DMT_NB_TEST_GROUPS": "4",  # 07: synthetic test groups
    "DMT_NB_MAX_GROUP": "8",  # 02: largest group of the cost plot
    "DMT_NB_EVIDENCE_GROUPS": "3",  # 08: test groups of the attention evidence
    "DMT_NB_KNOCKOUT_GROUPS": "3",  # 02, 04: test groups of the module knock-outs
    "DMT_NB_HARD_GROUPS": "4",  # 09: groups of the hard set
    "DMT_NB_VARIANTS": "full,no_r2r",  # 09: two variants of the ablation
    "DMT_NB_BUDGET": "3 steps",  # 09: training budget per variant
    "DMT_NB_SEEDS": "0",  # 09: one seed
    "DMT_NB_DEVICE": "cpu",
}

for key, value in QUICK.items():
    os.environ.setdefault(key, value)
os.environ.setdefault("DMT_NB_OUTPUT_DIR", tempfile.mkdtemp(prefix="dmt-nbval-"))
