"""Third-party console lines that do not concern a facediag user, silenced where they arise: each filter
matches one exact message (Lightning's advertisements, a deprecation inside Lightning, a checkpoint
notice); every other log line and warning still shows."""

from __future__ import annotations

import logging
import warnings

# Lightning's rank-zero loggers (its `rank_zero_info` lines)
LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
# "💡 Tip: For seamless cloud logging ... litlogger" and "... cloud uploads and versioning ... litmodels"
TIP_PREFIX = "💡 Tip: For seamless cloud"
WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # torch deprecates LeafSpec; Lightning's own utilities/_pytree.py still builds one (nothing a user can change)
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # DTL1 tests its best checkpoint with a callback-free Trainer: the callbacks' state is not needed there
    (r"Be aware that when using `ckpt_path`, callbacks used to create the checkpoint need to be provided", UserWarning),
)


class DropLightningTips(logging.Filter):
    """Drops Lightning's tips about its cloud products (litlogger, litmodels)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP_PREFIX)


def quiet_third_party() -> None:
    """Install the filters (once per process; safe to call again)."""
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropLightningTips) for f in logger.filters):
            logger.addFilter(DropLightningTips())
    for message, category in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
