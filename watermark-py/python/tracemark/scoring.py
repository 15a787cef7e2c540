"""Model-assisted scoring helpers: weights from a causal LM's logits, and
edit-aware weights that drop observations an edit has likely broken.

The weighted test itself is ``Detector.detect_weighted`` (exact for kgw and
tournament, a conservative bound for gumbel); its weights must not depend on
the key, and everything here reads only the text and the model.

>>> edit_aware_weights([1.0] * 6, [-1.0, -1.0, -20.0, -1.0, -1.0, -1.0], width=1)
[1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
"""

from __future__ import annotations

import math
from typing import List, Sequence

__all__ = ["EDIT_LOGPROB", "edit_aware_weights"]

EDIT_LOGPROB = math.log(1e-4)
"""Tokens the model gives less than this log-probability are treated as
likely edits: a uniformly random substitute in a 49,152-token vocabulary has
a median probability far below 1e-4 under SmolLM2, a watermarked token
(biased by at most e^δ) almost never does."""


def edit_aware_weights(
    weights: Sequence[float],
    token_logprobs: Sequence[float],
    width: int,
    min_logprob: float = EDIT_LOGPROB,
) -> List[float]:
    """``weights`` with every observation an improbable token touches set to 0.

    An edited token breaks its own observation and those of the next
    ``width`` tokens, whose contexts (the ``width`` ids before them, SPEC §5)
    now hold it; those observations are pure noise under the null and dilute
    the test. ``token_logprobs[i]`` is the model's log-probability of token
    ``i`` given everything before it (unwatermarked model); a token below
    ``min_logprob`` zeroes the weights of positions ``i .. i + width``.
    Key-independent, so the weighted test stays exact.
    """
    if len(weights) != len(token_logprobs):
        raise ValueError(f"{len(weights)} weights for {len(token_logprobs)} log-probabilities")
    if width < 0:
        raise ValueError("width must be >= 0")
    out = list(map(float, weights))
    for i, lp in enumerate(token_logprobs):
        if not lp >= min_logprob:  # NaN counts as improbable
            for j in range(i, min(i + width + 1, len(out))):
                out[j] = 0.0
    return out
