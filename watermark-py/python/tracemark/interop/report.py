"""What every reader of a foreign watermark shares: the report (in the native
report's vocabulary: verdicts ``"detected"``, ``"not_detected"``,
``"inconclusive"``; dedup ``"pair"``, ``"context"``, ``"none"``; outcome
``"tested"`` or ``"inconclusive"``), the repeated-observation rule and the
exact test (the verifier's tails, through :class:`tracemark.Null` and the
native bindings: no p-value is computed in Python)."""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from .._native import InvalidParameterError, Null

#: The default significance level of a verdict.
ALPHA = 1e-6

# transformers' documented default `hashing_key` (the millionth prime) and the
# SynthID key list of transformers' and synthid-text's examples: anyone can
# produce these watermarks, so a report says so.
_PUBLIC_HF_KEYS = frozenset({15485863})
_PUBLIC_SYNTHID_KEYS = (
    (654, 400, 836, 123, 340, 443, 597, 160, 57),
    (654, 400, 836, 123, 340, 443, 597, 160, 57, 29, 590, 639, 13, 715, 468, 990, 966, 226, 324, 585,
     118, 504, 421, 521, 129, 669, 732, 225, 90, 960),
)
_PUBLIC_KEY_NOTE = "this key is a public default of the owner's documentation: anyone can produce this watermark"

_Ids = Union[Sequence[int], npt.NDArray[np.integer]]


class Dedup(str, enum.Enum):
    """Which repeated observations are scored once: the native detector's
    ``dedup`` words (``Detector(..., dedup="pair")``, ``Detection.dedup``), so
    ``Dedup.PAIR == "pair"``.

    ``PAIR`` (default, tracemark's rule, SPEC §10): an observation is dropped
    if the keyed input its value was computed from (the owner's seed and the
    token) occurred earlier in the text; equal inputs give equal values, so a
    repeat is a copy, not new evidence. ``CONTEXT``: as ``PAIR``, and an
    observation is also dropped if its context occurred earlier (at most one
    token per context, what vLLM's and SynthID's detectors do). ``NONE``: every
    observation is scored (transformers' KGW detector's default); the exact
    test then assumes independence that repeated text breaks.
    """

    PAIR = "pair"
    CONTEXT = "context"
    NONE = "none"

    def __str__(self) -> str:
        return self.value


class TokenStatus(enum.IntEnum):
    """What happened to one completion token: the codes of the ``status``
    arrays, whose ``label`` is the native report's word for it (a native
    ``Mark``'s ``status``: ``"scored"``, ``"duplicate"``, ``"short_context"``;
    ``"masked"`` is SynthID's end-of-sequence mask, which tracemark's own
    schemes do not have)."""

    SCORED = 0
    #: Its observation (or, under ``Dedup.CONTEXT``, its context) occurred earlier.
    DUPLICATE = 1
    #: Too little history to have a seed (the owner's generator did not watermark it).
    SHORT_CONTEXT = 2
    #: At or after the first end-of-sequence token (SynthID's EOS mask).
    MASKED = 3

    @property
    def label(self) -> str:
        """The native report's word: ``"scored"``, ``"duplicate"``, ``"short_context"`` or ``"masked"``."""
        return self.name.lower()


class Verdict(str, enum.Enum):
    """The verdict at the report's significance level, in the native report's
    words (``Detection.verdict``, a JSON report's ``"verdict"``), so
    ``Verdict.DETECTED == "detected"``."""

    DETECTED = "detected"
    NOT_DETECTED = "not_detected"
    INCONCLUSIVE = "inconclusive"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ExactTest:
    """The exact test that was run: ``log10_p`` is ``log10 P(T >= statistic)``
    under ``null_distribution``, computed in log space by tracemark's verifier."""

    name: str
    null_distribution: str
    statistic: float
    expected: float
    #: ``(statistic - expected) / sd``: informational only, never the test.
    z_score: float
    log10_p: float

    @property
    def p_value(self) -> float:
        """The p-value itself (0.0 when it underflows a float; ``log10_p`` does not)."""
        return 10.0**self.log10_p


@dataclass(frozen=True)
class Inconclusive:
    """No test was run, and why."""

    reason: str


@dataclass(frozen=True)
class OwnerScore:
    """What the owner's own detector reports on the same tokens, reproduced
    exactly (the tests compare it with the owner's code)."""

    #: The owner's detector and the options reproduced.
    detector: str
    #: The owner's statistic's name.
    score_name: str
    score: float
    #: Tokens the owner's detector scores.
    scored: int
    #: The owner's p-value, or None where the owner's detector gives none.
    p_value: Optional[float]
    #: How the owner computes ``p_value`` (or why there is none).
    p_value_method: str


@dataclass(frozen=True)
class InteropReport:
    """tracemark's report for a watermark it did not make.

    ``outcome`` is an :class:`ExactTest` or, when too few tokens could be
    scored, :class:`Inconclusive`; ``owner`` is the owner's own score beside it.
    """

    #: ``transformers-kgw``, ``synthid-text``, ``vllm-gumbel`` or ``vllm-dual-key-gumbel``.
    watermark: str
    #: The public parameters (never key material).
    params: Dict[str, Any]
    #: Public fingerprint of the key (not a secret: see the module's note).
    key_id: str
    dedup: Dedup
    alpha: float
    #: Completion tokens seen.
    seen: int
    scored: int
    skipped_duplicate: int
    skipped_short_context: int
    skipped_masked: int
    outcome: Union[ExactTest, Inconclusive]
    owner: OwnerScore
    notes: Tuple[str, ...] = field(default=())

    @property
    def log10_p(self) -> Optional[float]:
        return self.outcome.log10_p if isinstance(self.outcome, ExactTest) else None

    @property
    def p_value(self) -> Optional[float]:
        return self.outcome.p_value if isinstance(self.outcome, ExactTest) else None

    @property
    def verdict(self) -> Verdict:
        if not isinstance(self.outcome, ExactTest):
            return Verdict.INCONCLUSIVE
        return Verdict.DETECTED if self.outcome.log10_p < math.log10(self.alpha) else Verdict.NOT_DETECTED

    @property
    def detected(self) -> bool:
        return self.verdict is Verdict.DETECTED

    def to_dict(self) -> Dict[str, Any]:
        """The report as plain JSON-ready data."""
        outcome: Dict[str, Any]
        if isinstance(self.outcome, ExactTest):
            outcome = {"status": "tested", **self.outcome.__dict__, "p_value": self.outcome.p_value}
        else:
            outcome = {"status": "inconclusive", "reason": self.outcome.reason}
        return {
            "watermark": self.watermark,
            "params": dict(self.params),
            "key_id": self.key_id,
            "dedup": self.dedup.value,
            "alpha": self.alpha,
            "verdict": self.verdict.value,
            "counts": {
                "seen": self.seen,
                "scored": self.scored,
                "skipped_duplicate": self.skipped_duplicate,
                "skipped_short_context": self.skipped_short_context,
                "skipped_masked": self.skipped_masked,
            },
            "outcome": outcome,
            "owner": dict(self.owner.__dict__),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        lines = [f"{self.verdict.value} — {self.watermark} watermark, key {self.key_id}"]
        if isinstance(self.outcome, ExactTest):
            t = self.outcome
            lines.append(
                f"  {t.name}: {t.statistic:g} (expected {t.expected:g} under {t.null_distribution}), "
                f"p = 10^{t.log10_p:.2f} (alpha {self.alpha:g})"
            )
        else:
            lines.append(f"  not tested: {self.outcome.reason}")
        lines.append(
            f"  tokens: {self.seen} seen, {self.scored} scored, {self.skipped_duplicate} repeated "
            f"({self.dedup.value} rule), {self.skipped_short_context} without context, {self.skipped_masked} masked"
        )
        o = self.owner
        p = "none" if o.p_value is None else f"{o.p_value:.3g}"
        lines.append(f"  owner ({o.detector}): {o.score_name} {o.score:.6g} over {o.scored} tokens, p-value {p}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True, repr=False)
class InteropDetection:
    """Per-token values (in the owner's terms) and the report.

    ``values[i]`` belongs to completion token ``i``: the green bit (KGW, -1
    without a seed), the row of g-values (SynthID, -1 without a context), the
    owner's Gumbel score ``-ln(1 - u)`` (vLLM) or its weighted score
    ``(1 - a)(-ln(1 - u_A)) + a(-ln(1 - u_B))`` (vLLM dual-key). ``status[i]`` is a
    :class:`TokenStatus`.
    """

    values: npt.NDArray[Any]
    status: npt.NDArray[np.int8]
    report: InteropReport

    def __repr__(self) -> str:
        return f"InteropDetection(tokens={len(self.status)}, verdict={self.report.verdict.value!r})"


# ---------------------------------------------------------------------------
# Shared pieces


def _key_id(watermark: str, material: bytes) -> str:
    digest = hashlib.sha256(b"tracemark/v1/interop/key-id\x00" + watermark.encode() + b"\x00" + material)
    return f"{watermark}:{digest.hexdigest()[:16]}"


def _ids(ids: _Ids, name: str) -> List[int]:
    out = [int(t) for t in np.asarray(ids, dtype=np.int64).reshape(-1).tolist()]
    if any(t < 0 for t in out):
        raise InvalidParameterError(f"{name}: token ids must be non-negative")
    return out


def _alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise InvalidParameterError(f"alpha must be in (0, 1), e.g. {ALPHA}; got {alpha}")
    return float(alpha)


def _dedup(dedup: Union[Dedup, str]) -> Dedup:
    try:
        return dedup if isinstance(dedup, Dedup) else Dedup(dedup)
    except ValueError:
        raise InvalidParameterError(f"dedup must be one of 'pair', 'context', 'none'; got {dedup!r}") from None


class _Deduper:
    """Tracemark's repeated-observation rule over (context, input) keys."""

    def __init__(self, mode: Dedup) -> None:
        self.mode = mode
        self.inputs: set = set()
        self.contexts: set = set()

    def first(self, context: object, keyed_input: object) -> bool:
        if self.mode is Dedup.NONE:
            return True
        repeated = keyed_input in self.inputs or (self.mode is Dedup.CONTEXT and context in self.contexts)
        self.inputs.add(keyed_input)
        self.contexts.add(context)
        return not repeated


def _test(null: Null, statistic_name: str, n: int, total: float) -> Union[ExactTest, Inconclusive]:
    if n == 0:
        return Inconclusive("no token could be scored (too short, or every token repeated or masked)")
    mean, sd = null.total_moments(n)
    return ExactTest(
        name=null.test_name(statistic_name),
        null_distribution=null.total(n),
        statistic=float(total),
        expected=mean,
        z_score=(total - mean) / sd if sd > 0 else 0.0,
        log10_p=null.log10_upper(n, float(total)),
    )


def _owner_version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # a missing distribution: the report says so rather than guess
        return "unknown version"
