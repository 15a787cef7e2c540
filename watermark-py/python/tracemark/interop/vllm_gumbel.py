"""vLLM's native Gumbel watermarks (``--watermark-config``, ``algorithm=
"gumbel"`` and ``"dual_key_gumbel"``, PRF ``philox``) read by tracemark, with
no torch and no vLLM.

Every keyed value is the verifier's (``tracemark_verifier::interop::vllm``,
through the native bindings): the Philox4x32-10 word of each (context, token),
its 24-bit value and float32 uniform, the owner's and the discrete-exact
scores, the dual-key derived keys; the tails (the Gamma tail, the weighted
two-Gamma tail of the dual-key reader, the owners' own p-values) are
tracemark-stats'.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _native
from .._native import EmptyInputError, InvalidParameterError, Null
from .report import (
    ALPHA,
    Dedup,
    ExactTest,
    Inconclusive,
    InteropDetection,
    InteropReport,
    OwnerScore,
    TokenStatus,
    _alpha,
    _dedup,
    _Deduper,
    _Ids,
    _ids,
    _key_id,
    _test,
)

__all__ = ["VllmDualKeyGumbelDetector", "VllmGumbelDetector", "vllm_gumbel_detector"]


def _vllm_status(dedup_mode: Dedup, contexts: List[Tuple[int, ...]], ids: List[int]) -> np.ndarray:
    """Per token: scored, or a duplicate under ``dedup_mode`` (vLLM's contexts never fall short)."""
    status = np.full(len(ids), TokenStatus.SCORED, dtype=np.int8)
    dedup = _Deduper(dedup_mode)
    for i, (context, token) in enumerate(zip(contexts, ids)):
        if not dedup.first(context, (context, token)):
            status[i] = TokenStatus.DUPLICATE
    return status


class VllmGumbelDetector:
    """vLLM's native Gumbel watermark (``WatermarkConfig(algorithm="gumbel",
    prf="philox")``) read by tracemark, in numpy (no torch, no vLLM).

    The uniform of a token is vLLM's: a Philox4x32-10 word of the token under
    its context (the ``context_width`` previous *generated* tokens, ``-1``
    before the first: vLLM never puts prompt tokens in a context), of which the
    top 24 bits ``m`` give ``u = float32((m + 1) / (2^24 + 1))``; the owner's
    score is ``-ln(1 - u)``. ``values`` holds that score, bit for bit.

    The test's score is ``-ln(1 - m / 2^24) = -ln P(M >= m)``: a 24-bit
    uniform makes the owner's score a discrete variable, and this is its exact
    survival, so under the null it is stochastically below Exponential(1) and
    the Gamma(n, 1) tail of the sum is a valid p-value. It equals the owner's
    score for ``u >= 1/2`` and is below it by at most ``ln(1 + 2^-24)``
    otherwise.
    """

    def __init__(
        self,
        *,
        key: int,
        context_width: int = 4,
        prf: str = "philox",
        alpha: float = ALPHA,
        dedup: Union[Dedup, str] = Dedup.PAIR,
    ) -> None:
        if prf != "philox":
            raise InvalidParameterError(f"prf: vLLM's only PRF is 'philox', got {prf!r}")
        if not isinstance(key, int) or not 0 <= key < 2**64:
            raise InvalidParameterError("key must be vLLM's watermark key, an integer in [0, 2^64)")
        if context_width < 1:
            raise InvalidParameterError(f"context_width must be at least 1, got {context_width}")
        self.context_width = int(context_width)
        self.alpha = _alpha(alpha)
        self.dedup = _dedup(dedup)
        self._key = key
        self.key_id = _key_id("vllm-gumbel", key.to_bytes(8, "big"))
        self.null = Null.exponential()

    def __repr__(self) -> str:
        return f"VllmGumbelDetector(key_id={self.key_id!r}, context_width={self.context_width})"

    @property
    def params(self) -> Dict[str, Any]:
        return {"algorithm": "gumbel", "prf": "philox4x32-10-v1", "context_width": self.context_width}

    def contexts(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's context of every token: the previous ``context_width`` ids, ``-1`` before the first."""
        padded = np.concatenate([np.full(self.context_width, -1, dtype=np.int64), np.asarray(ids, dtype=np.int64)])
        windows = np.lib.stride_tricks.sliding_window_view(padded, self.context_width)
        return np.ascontiguousarray(windows[: len(ids)])

    def words(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's 32-bit Philox word of every token (uint32)."""
        return _native.vllm_words(self._key, self.context_width, np.asarray(ids, dtype=np.int64).reshape(-1))

    def uniforms(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's float32 uniform of every token."""
        return _native.vllm_uniforms(self.words(ids))

    def detect(self, completion: _Ids) -> InteropDetection:
        """Test ``completion`` (the generated ids only)."""
        ids = _ids(completion, "completion")
        if not ids:
            raise EmptyInputError("there is no completion token to test")
        owner_scores, exact_scores = _native.vllm_scores(self.words(ids))
        contexts = [tuple(int(c) for c in row) for row in self.contexts(ids)]
        status = _vllm_status(self.dedup, contexts, ids)
        scored = status == TokenStatus.SCORED
        total = math.fsum(exact_scores[scored].tolist())
        report = InteropReport(
            watermark="vllm-gumbel",
            params=self.params,
            key_id=self.key_id,
            dedup=self.dedup,
            alpha=self.alpha,
            seen=len(ids),
            scored=int(scored.sum()),
            skipped_duplicate=int((~scored).sum()),
            skipped_short_context=0,
            skipped_masked=0,
            outcome=_test(self.null, "sum of -ln P(U >= u)", int(scored.sum()), total),
            owner=self._owner_score(contexts, owner_scores),
        )
        return InteropDetection(values=owner_scores, status=status, report=report)

    def _owner_score(self, contexts: List[Tuple[int, ...]], scores: np.ndarray) -> OwnerScore:
        """vLLM's ``GumbelWatermarkDetector.detect`` with its defaults
        (``deduplicate_contexts=True``: the first token of each context)."""
        seen: set = set()
        keep = []
        for context in contexts:
            keep.append(context not in seen)
            seen.add(context)
        kept = scores[np.array(keep, dtype=bool)]
        # The owner sums with torch (float64); a different summation order may differ in the last bits.
        score = float(kept.sum(dtype=np.float64)) if len(kept) else 0.0
        return OwnerScore(
            detector="vLLM GumbelWatermarkDetector (deduplicate_contexts=True)",
            score_name="sum of -ln(1-u)",
            score=score,
            scored=len(kept),
            p_value=_native.vllm_owner_p_value(score, len(kept)),
            p_value_method="Gamma(n, 1) survival, exact in log space then exp: 0.0 below about 1e-308",
        )


# ---------------------------------------------------------------------------
# vLLM's dual-key Gumbel watermark (algorithm "dual_key_gumbel")


class VllmDualKeyGumbelDetector:
    """vLLM's dual-key Gumbel watermark (``WatermarkConfig(algorithm=
    "dual_key_gumbel", alpha=...)``, the variant that allows speculative
    decoding) read by tracemark, in numpy (no torch, no vLLM).

    vLLM derives two Philox keys from the configured one,
    ``K_A = SHA-256("key_a" ‖ key)[:8]`` and ``K_B = SHA-256("key_b" ‖ key)[:8]``,
    and samples every token as a Gumbel-max under ``K_A`` with probability
    ``1 - a`` or under ``K_B`` with probability ``a`` (``a`` is vLLM's
    ``alpha``, here ``dual_key_alpha``; the coin comes from the request's own
    sampler, not from the key). Each token's uniforms ``u_A``, ``u_B`` are
    those of :class:`VllmGumbelDetector` under the two keys; vLLM's detector
    (``DualKeyGumbelWatermarkDetector``) scores ``(1 - a)(-ln(1 - u_A)) +
    a(-ln(1 - u_B))``, and ``values`` holds that score.

    The test's statistic is the same weighted sum of the discrete-exact scores
    ``-ln P(M >= m)`` of each key (see :class:`VllmGumbelDetector`); under the
    null the two keys' uniforms are independent, so the sum is stochastically
    below ``(1 - a) G + a G'`` with G, G' independent Gamma(n, 1), whose exact
    tail is the p-value (vLLM's own p-value moment-matches one Gamma to it).
    ``alpha`` is tracemark's significance level, as for every detector here.
    """

    def __init__(
        self,
        *,
        key: int,
        context_width: int = 4,
        dual_key_alpha: float = 0.1,
        prf: str = "philox",
        alpha: float = ALPHA,
        dedup: Union[Dedup, str] = Dedup.PAIR,
    ) -> None:
        if isinstance(dual_key_alpha, bool) or not isinstance(dual_key_alpha, (int, float)):
            raise InvalidParameterError(f"dual_key_alpha must be vLLM's alpha, a number in [0, 1]; got {dual_key_alpha!r}")
        if not 0.0 <= dual_key_alpha <= 1.0:
            raise InvalidParameterError(
                f"dual_key_alpha must be vLLM's alpha (the probability of key B) in [0, 1], e.g. 0.1; got {dual_key_alpha}"
            )
        self._keys = VllmGumbelDetector(key=key, context_width=context_width, prf=prf, alpha=alpha, dedup=dedup)
        self._key_a = _native.vllm_derive_key(key, b"key_a")
        self._key_b = _native.vllm_derive_key(key, b"key_b")
        self.context_width = self._keys.context_width
        self.dual_key_alpha = float(dual_key_alpha)
        self.weights = (1.0 - self.dual_key_alpha, self.dual_key_alpha)
        self.alpha = self._keys.alpha
        self.dedup = self._keys.dedup
        self.key_id = _key_id("vllm-dual-key-gumbel", key.to_bytes(8, "big"))
        self.null = self._keys.null

    def __repr__(self) -> str:
        return (
            f"VllmDualKeyGumbelDetector(key_id={self.key_id!r}, context_width={self.context_width}, "
            f"dual_key_alpha={self.dual_key_alpha})"
        )

    @property
    def params(self) -> Dict[str, Any]:
        return {
            "algorithm": "dual_key_gumbel",
            "prf": "philox4x32-10-v1",
            "context_width": self.context_width,
            "dual_key_alpha": self.dual_key_alpha,
        }

    def contexts(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's context of every token (as :meth:`VllmGumbelDetector.contexts`)."""
        return self._keys.contexts(ids)

    def words(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's 32-bit Philox words of every token: column 0 under key A, column 1 under key B."""
        ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        return np.stack([_native.vllm_words(k, self.context_width, ids_arr) for k in (self._key_a, self._key_b)], axis=-1)

    def uniforms(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's float32 uniforms of every token: column 0 under key A, column 1 under key B."""
        words = self.words(ids)
        return np.stack([_native.vllm_uniforms(np.ascontiguousarray(words[:, k])) for k in (0, 1)], axis=-1)

    def detect(self, completion: _Ids) -> InteropDetection:
        """Test ``completion`` (the generated ids only)."""
        ids = _ids(completion, "completion")
        if not ids:
            raise EmptyInputError("there is no completion token to test")
        words = self.words(ids)
        a, b = self.weights
        (owner_a, exact_a), (owner_b, exact_b) = (
            _native.vllm_scores(np.ascontiguousarray(words[:, k])) for k in (0, 1)
        )
        owner_scores = owner_a * a + owner_b * b
        exact_scores = exact_a * a + exact_b * b
        contexts = [tuple(int(c) for c in row) for row in self.contexts(ids)]
        status = _vllm_status(self.dedup, contexts, ids)
        scored = status == TokenStatus.SCORED
        n = int(scored.sum())
        total = math.fsum(exact_scores[scored].tolist())
        outcome: Union[ExactTest, Inconclusive]
        if n == 0:
            outcome = Inconclusive("no token could be scored (too short, or every token repeated)")
        else:
            sd = math.sqrt(n * (a * a + b * b))
            outcome = ExactTest(
                name=f"sum of {a:.6g}·(-ln P(U_A >= u_A)) + {b:.6g}·(-ln P(U_B >= u_B))",
                null_distribution=f"{a:.6g}·Gamma(shape={n}, scale=1) + {b:.6g}·Gamma(shape={n}, scale=1)",
                statistic=float(total),
                expected=float(n),
                z_score=(total - n) / sd,
                log10_p=_native.weighted_gamma_log10_upper(n, a, b, total),
            )
        report = InteropReport(
            watermark="vllm-dual-key-gumbel",
            params=self.params,
            key_id=self.key_id,
            dedup=self.dedup,
            alpha=self.alpha,
            seen=len(ids),
            scored=n,
            skipped_duplicate=len(ids) - n,
            skipped_short_context=0,
            skipped_masked=0,
            outcome=outcome,
            owner=self._owner_score(contexts, owner_scores),
        )
        return InteropDetection(values=owner_scores, status=status, report=report)

    def _owner_score(self, contexts: List[Tuple[int, ...]], scores: np.ndarray) -> OwnerScore:
        """vLLM's ``DualKeyGumbelWatermarkDetector.detect`` with its defaults
        (``deduplicate_contexts=True``): the weighted sum, and a Gamma with the
        sum's mean ``n`` and variance ``n v``, ``v = (1 - a)^2 + a^2``."""
        seen: set = set()
        keep = []
        for context in contexts:
            keep.append(context not in seen)
            seen.add(context)
        kept = scores[np.array(keep, dtype=bool)]
        score = float(kept.sum(dtype=np.float64)) if len(kept) else 0.0
        n = len(kept)
        p_value = _native.vllm_dual_key_owner_p_value(score, n, self.dual_key_alpha)
        return OwnerScore(
            detector="vLLM DualKeyGumbelWatermarkDetector (deduplicate_contexts=True)",
            score_name="sum of (1-a)·(-ln(1-u_A)) + a·(-ln(1-u_B))",
            score=score,
            scored=n,
            p_value=p_value,
            p_value_method=(
                "Gamma(n/v, v) survival, v = (1-a)^2 + a^2: matches the mean and variance of the weighted sum, "
                "not its distribution (an approximation); 0.0 below about 1e-308"
            ),
        )


def vllm_gumbel_detector(
    *,
    key: int,
    context_width: int = 4,
    prf: str = "philox",
    algorithm: str = "gumbel",
    dual_key_alpha: Optional[float] = None,
    alpha: float = ALPHA,
    dedup: Union[Dedup, str] = Dedup.PAIR,
) -> Union[VllmGumbelDetector, VllmDualKeyGumbelDetector]:
    """A detector of vLLM's native Gumbel watermark (``--watermark-config``)
    given its 64-bit key and context width: ``algorithm="gumbel"`` (the
    default) or ``"dual_key_gumbel"`` with vLLM's ``alpha`` as
    ``dual_key_alpha`` (vLLM's default 0.1 when omitted). ``alpha`` is
    tracemark's significance level."""
    if algorithm == "gumbel":
        if dual_key_alpha is not None:
            raise InvalidParameterError("dual_key_alpha is vLLM's alpha for algorithm='dual_key_gumbel' only")
        return VllmGumbelDetector(key=key, context_width=context_width, prf=prf, alpha=alpha, dedup=dedup)
    if algorithm == "dual_key_gumbel":
        return VllmDualKeyGumbelDetector(
            key=key,
            context_width=context_width,
            dual_key_alpha=0.1 if dual_key_alpha is None else dual_key_alpha,
            prf=prf,
            alpha=alpha,
            dedup=dedup,
        )
    raise InvalidParameterError(f"algorithm must be vLLM's 'gumbel' or 'dual_key_gumbel'; got {algorithm!r}")
