"""Model-assisted scoring helpers: edit-aware weights that drop observations
an edit has likely broken, a realignment that undoes likely insertions, and
the edit-robust test that takes the better of the two explanations.

The weighted test itself is ``Detector.detect_weighted`` (exact for kgw and
tournament, a conservative bound for gumbel); its weights must not depend on
the key, and everything here reads only the text and the model, so every
test built from it stays exact (or conservative).

>>> edit_aware_weights([1.0] * 6, [-1.0, -1.0, -20.0, -1.0, -1.0, -1.0], width=1)
[1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
>>> realign([5, 6, 7, 8], [-1.0, -20.0, -1.0, -1.0])
[0, 2, 3]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Union

from ._native import SchemeConfig

if TYPE_CHECKING:  # pragma: no cover
    from ._native import Detector, WeightedDetection

__all__ = ["EDIT_LOGPROB", "EditRobustDetection", "context_width", "detect_edit_robust", "edit_aware_weights", "realign"]

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


def realign(token_ids: Sequence[int], token_logprobs: Sequence[float], min_logprob: float = EDIT_LOGPROB) -> List[int]:
    """The indexes of the tokens to keep when every improbable token is taken
    for an insertion: the tokens whose log-probability under the model (given
    everything before them) is at least ``min_logprob``.

    Scoring the kept tokens alone aligns the text back to what was generated
    when the edits were insertions: the contexts of the tokens after an
    inserted one are whole again (an insertion breaks ``width + 1``
    observations; removed, it breaks none). Key-independent, like the
    edit-aware weights.
    """
    if len(token_ids) != len(token_logprobs):
        raise ValueError(f"{len(token_ids)} tokens for {len(token_logprobs)} log-probabilities")
    return [i for i, lp in enumerate(token_logprobs) if lp >= min_logprob]


def context_width(scheme: Union[str, SchemeConfig]) -> int:
    """The context width of a scheme: the number of ids before a token that its
    seed reads (SPEC §5; ``kgw:...,context=lefthash:4`` -> 4)."""
    config = scheme if isinstance(scheme, SchemeConfig) else SchemeConfig(scheme)
    return int(config.context.rsplit(":", 1)[1])


@dataclass(frozen=True)
class EditRobustDetection:
    """The edit-robust test: the better of two key-independent explanations of
    the edits, Bonferroni-corrected (``p = min(1, 2 * min(p_edit, p_realigned))``,
    valid because each is).

    - ``edit_aware``: every improbable token taken for a substitution, its
      observations weighted 0 (:func:`edit_aware_weights`);
    - ``realigned``: every improbable token taken for an insertion and removed
      (:func:`realign`), the rest scored with their own weights.
    """

    log10_p: float
    edit_aware: "WeightedDetection"
    realigned: "WeightedDetection"
    kept: int
    tokens: int

    @property
    def p_value(self) -> float:
        return 10.0**self.log10_p

    @property
    def chosen(self) -> str:
        """Which explanation gave the smaller p-value."""
        return "realigned" if self.realigned.log10_p < self.edit_aware.log10_p else "edit-aware"

    def detected(self, alpha: float = 1e-6) -> bool:
        return self.log10_p < math.log10(alpha)


def detect_edit_robust(
    detector: "Detector",
    prompt: Optional[Sequence[int]],
    completion: Sequence[int],
    weights: Sequence[float],
    token_logprobs: Sequence[float],
    min_logprob: float = EDIT_LOGPROB,
) -> EditRobustDetection:
    """Tests ``completion`` with the edit-robust test (:class:`EditRobustDetection`).

    ``weights`` are the model's weights of the completion's positions
    (``tracemark.position_weights``) and ``token_logprobs`` each token's
    log-probability under the same (unwatermarked) model.

    The realigned completion keeps each kept token's weight from the text as
    given (a weight is any key-independent number, so the test stays exact).
    """
    if not (len(completion) == len(weights) == len(token_logprobs)):
        raise ValueError(f"{len(completion)} tokens, {len(weights)} weights, {len(token_logprobs)} log-probabilities")
    keep = realign(completion, token_logprobs, min_logprob)
    realigned = detector.detect_weighted(prompt, [completion[i] for i in keep], [weights[i] for i in keep])
    width = context_width(realigned.unweighted.scheme)
    edit = detector.detect_weighted(prompt, completion, edit_aware_weights(weights, token_logprobs, width, min_logprob))
    log10_p = min(0.0, math.log10(2.0) + min(edit.log10_p, realigned.log10_p))
    return EditRobustDetection(log10_p=log10_p, edit_aware=edit, realigned=realigned, kept=len(keep), tokens=len(completion))
