"""Sample quality codes, one byte per sample (OPC UA status classes folded to three)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

__all__ = ["Quality", "quality_from_opcua_status"]


class Quality(IntEnum):
    """Quality of one sample. Values fit in ``uint8``."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    # the source was lost (NDEATH, connection loss): the last value is stale, not current
    STALE = 3


def quality_from_opcua_status(status_codes: NDArray[np.uint32]) -> NDArray[np.uint8]:
    """Map OPC UA StatusCode values (top two bits: 00 good, 01 uncertain, 10 bad) to Quality."""
    severity = (np.asarray(status_codes, dtype=np.uint32) >> np.uint32(30)).astype(np.uint8)
    out = np.full(severity.shape, Quality.BAD, dtype=np.uint8)
    out[severity == 0] = Quality.GOOD
    out[severity == 1] = Quality.UNCERTAIN
    return out
