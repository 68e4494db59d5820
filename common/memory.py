"""Memory budgets: the Trainer's choices between an in-memory and a scalable path (the closed
form against iALS, in-memory training arrays against streaming from TFRecords) compare an
estimate of the in-memory path's peak against a budget, never a fixed row or movie count."""
from __future__ import annotations

import os

#: The share of this machine's memory a budget of 0 ("automatic") stands for.
AUTO_SHARE = 0.5


def physical_memory_bytes() -> int:
    """This machine's memory (0 where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0


def budget_bytes(gigabytes: float) -> float:
    """A budget given in GB (HParams), 0 meaning AUTO_SHARE of this machine's memory."""
    return gigabytes * 1e9 if gigabytes > 0 else AUTO_SHARE * physical_memory_bytes()


def verdict(what: str, need: float, budget: float, setting: str) -> str:
    """A log line saying whether ``need`` bytes fit ``budget``, naming the setting that sets it."""
    fits = "fits" if need <= budget else "does not fit"
    return (f"{what} need {need / 1e9:.2f} GB, which {fits} the {budget / 1e9:.1f} GB budget "
            f"(HParams.{setting}, 0: {AUTO_SHARE:.0%} of this machine's memory)")
