"""Exact tests for the watermarks others deploy: transformers' KGW
(``WatermarkLogitsProcessor``), SynthID-Text and vLLM's Gumbel watermark
(``algorithm="gumbel"`` and ``"dual_key_gumbel"``).

Each detector recomputes the owner's per-token values (green bit, g-values,
Gumbel score) exactly as the owner's generator did, given the owner's key and
configuration, and tests them with tracemark's rules: prompt tokens are never
scored, a repeated observation is scored once (``Dedup.PAIR``, SPEC §10), and
the p-value is the exact tail of the null distribution in log space
(``log10_p`` stays finite far below 1e-308); the owner's own score and p-value
are reported beside it. ``docs/interop.md`` says what each detector reads,
which owner versions were checked, and how the p-values differ and why.

>>> from tracemark.interop import vllm_gumbel_detector
>>> detector = vllm_gumbel_detector(key=0x1234_5678_9ABC_DEF0, context_width=4)
>>> result = detector.detect([791, 4062, 18328, 39935, 35308, 927, 279, 16053, 5679])
>>> result.report.verdict, result.report.scored
(<Verdict.NOT_DETECTED: 'no watermark detected'>, 9)
>>> len(result.values) == 9 and result.report.owner.detector.startswith("vLLM")
True

Key material is never logged, printed or put in a report: a report carries a
public key id (a domain-separated SHA-256 fingerprint). A fingerprint hides
nothing about a low-entropy key (the owners' documented defaults are small
integers): it names a key, it does not protect one.
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from ._native import EmptyInputError, InvalidParameterError, Null

__all__ = [
    "ALPHA",
    "Dedup",
    "ExactTest",
    "HfKgwDetector",
    "Inconclusive",
    "InteropDetection",
    "InteropReport",
    "OwnerScore",
    "SynthIdDetector",
    "TokenStatus",
    "Verdict",
    "VllmDualKeyGumbelDetector",
    "VllmGumbelDetector",
    "hf_kgw_detector",
    "synthid_detector",
    "vllm_gumbel_detector",
]

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


class Dedup(enum.Enum):
    """Which repeated observations are scored once.

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


class TokenStatus(enum.IntEnum):
    """What happened to one completion token."""

    SCORED = 0
    #: Its observation (or, under ``Dedup.CONTEXT``, its context) occurred earlier.
    DUPLICATE = 1
    #: Too little history to have a seed (the owner's generator did not watermark it).
    SHORT_CONTEXT = 2
    #: At or after the first end-of-sequence token (SynthID's EOS mask).
    MASKED = 3


class Verdict(enum.Enum):
    """The verdict at the report's significance level."""

    DETECTED = "WATERMARK DETECTED"
    NOT_DETECTED = "no watermark detected"
    INCONCLUSIVE = "INCONCLUSIVE"


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


# ---------------------------------------------------------------------------
# transformers' KGW: WatermarkLogitsProcessor / WatermarkDetector


class HfKgwDetector:
    """transformers' ``WatermarkLogitsProcessor`` (KGW) read by tracemark.

    The green list is the owner's: ``torch.Generator`` seeded with the owner's
    seed (``hashing_key * last token`` for ``lefthash``; the minimum over the
    window of ``hashing_key * (T[t] + 1) * (T[candidate] + 1)`` with the
    owner's keyed table ``T`` for ``selfhash``), then ``torch.randperm`` of the
    vocabulary, the first ``int(vocab_size * greenlist_ratio)`` ids green. It
    is computed with torch because torch's generator *is* the owner's PRF: it
    differs between CPU and CUDA, so ``device`` must be the generating device,
    as for the owner's detector.

    Under the null a token is green with probability exactly
    ``int(vocab_size * greenlist_ratio) / vocab_size`` (not the nominal
    ratio the owner's z-score uses): the test is the binomial tail with it.
    """

    def __init__(
        self,
        *,
        hashing_key: int,
        vocab_size: int,
        greenlist_ratio: float = 0.25,
        seeding_scheme: str = "lefthash",
        context_width: int = 1,
        device: str = "cpu",
        alpha: float = ALPHA,
        dedup: Union[Dedup, str] = Dedup.PAIR,
    ) -> None:
        import torch

        if seeding_scheme not in ("lefthash", "selfhash"):
            raise InvalidParameterError(f"seeding_scheme must be 'lefthash' or 'selfhash', got {seeding_scheme!r}")
        if not 0.0 < greenlist_ratio < 1.0:
            raise InvalidParameterError(f"greenlist_ratio must be in (0, 1), e.g. 0.25; got {greenlist_ratio}")
        if vocab_size < 2:
            raise InvalidParameterError(f"vocab_size must be at least 2, got {vocab_size}")
        if context_width < 1:
            raise InvalidParameterError(f"context_width must be at least 1, got {context_width}")
        if not isinstance(hashing_key, int) or hashing_key < 0:
            raise InvalidParameterError("hashing_key must be a non-negative integer")
        self.vocab_size = int(vocab_size)
        self.greenlist_ratio = float(greenlist_ratio)
        self.greenlist_size = int(self.vocab_size * self.greenlist_ratio)
        if not 0 < self.greenlist_size < self.vocab_size:
            raise InvalidParameterError(
                f"int(vocab_size * greenlist_ratio) = {self.greenlist_size}: no green or no red token"
            )
        self.seeding_scheme = seeding_scheme
        self.context_width = int(context_width)
        self.device = device
        self.alpha = _alpha(alpha)
        self.dedup = _dedup(dedup)
        self._hash_key = hashing_key
        self._rng = torch.Generator(device=device)
        self._rng.manual_seed(hashing_key)
        self._table_size = 1_000_003
        self._fixed_table = torch.randperm(self._table_size, generator=self._rng, device=device)
        self._greens: Dict[int, Any] = {}
        self.key_id = _key_id("transformers-kgw", str(hashing_key).encode())
        self.null = Null.binomial(1, self.greenlist_size / self.vocab_size)
        self._public_key = hashing_key in _PUBLIC_HF_KEYS

    def __repr__(self) -> str:
        return (
            f"HfKgwDetector(key_id={self.key_id!r}, seeding_scheme={self.seeding_scheme!r}, "
            f"context_width={self.context_width}, greenlist_ratio={self.greenlist_ratio}, vocab_size={self.vocab_size})"
        )

    @property
    def params(self) -> Dict[str, Any]:
        return {
            "seeding_scheme": self.seeding_scheme,
            "context_width": self.context_width,
            "greenlist_ratio": self.greenlist_ratio,
            "greenlist_size": self.greenlist_size,
            "vocab_size": self.vocab_size,
            "device": self.device,
        }

    def seed(self, window: Sequence[int]) -> int:
        """The owner's ``set_seed`` on the last ``context_width`` ids of
        ``window`` (for ``selfhash`` the window ends with the scored token)."""
        import torch

        seq = torch.tensor(list(window)[-self.context_width :], dtype=torch.int64, device=self.device)
        if self.seeding_scheme == "selfhash":
            a = self._fixed_table[seq % self._table_size] + 1
            b = self._fixed_table[seq[-1] % self._table_size] + 1
            seed = int((self._hash_key * a * b).min().item())
        else:
            seed = self._hash_key * int(seq[-1].item())
        return seed % (2**64 - 1)

    def _green_rank(self, seed: int) -> Any:
        rank = self._greens.get(seed)
        if rank is None:
            import torch

            self._rng.manual_seed(seed)
            perm = torch.randperm(self.vocab_size, device=self.device, generator=self._rng)
            rank = torch.empty_like(perm)
            rank[perm] = torch.arange(self.vocab_size, device=self.device)
            rank = rank.cpu().numpy()
            if len(self._greens) >= 4096:
                self._greens.clear()
            self._greens[seed] = rank
        return rank

    def is_green(self, seed: int, token: int) -> bool:
        """Whether ``token`` is in the owner's green list under ``seed``."""
        if not 0 <= token < self.vocab_size:
            raise InvalidParameterError(f"token {token} is outside the vocabulary of {self.vocab_size}")
        return bool(self._green_rank(seed)[token] < self.greenlist_size)

    def detect(self, completion: _Ids, prompt: _Ids = ()) -> InteropDetection:
        """Test ``completion``; ``prompt`` ids seed its first contexts but are never scored."""
        prompt_ids, ids = _ids(prompt, "prompt"), _ids(completion, "completion")
        if not ids:
            raise EmptyInputError("there is no completion token to test")
        history = prompt_ids + ids
        need = self.context_width - (1 if self.seeding_scheme == "selfhash" else 0)
        values = np.full(len(ids), -1, dtype=np.int8)
        status = np.full(len(ids), TokenStatus.SHORT_CONTEXT, dtype=np.int8)
        dedup = _Deduper(self.dedup)
        green = 0
        for i, token in enumerate(ids):
            at = len(prompt_ids) + i
            if at < need:
                continue
            context = tuple(history[max(0, at - self.context_width) : at])
            window = history[: at + 1] if self.seeding_scheme == "selfhash" else history[:at]
            seed = self.seed(window)
            values[i] = self.is_green(seed, token)
            if dedup.first(context, (seed, token)):
                status[i] = TokenStatus.SCORED
                green += int(values[i])
            else:
                status[i] = TokenStatus.DUPLICATE
        scored = int((status == TokenStatus.SCORED).sum())
        report = InteropReport(
            watermark="transformers-kgw",
            params=self.params,
            key_id=self.key_id,
            dedup=self.dedup,
            alpha=self.alpha,
            seen=len(ids),
            scored=scored,
            skipped_duplicate=int((status == TokenStatus.DUPLICATE).sum()),
            skipped_short_context=int((status == TokenStatus.SHORT_CONTEXT).sum()),
            skipped_masked=0,
            outcome=_test(self.null, "green count", scored, float(green)),
            owner=self._owner_score(ids),
            notes=(_PUBLIC_KEY_NOTE,) if self._public_key else (),
        )
        return InteropDetection(values=values, status=status, report=report)

    def _owner_score(self, ids: List[int]) -> OwnerScore:
        """transformers' ``WatermarkDetector`` on the completion alone (as its
        docs advise), ``ignore_repeated_ngrams=False``: every n-gram inside the
        completion counts, z against the nominal ratio, p from the normal tail."""
        n = self.context_width + 1 - (1 if self.seeding_scheme == "selfhash" else 0)
        total, green = 0, 0
        for end in range(n, len(ids) + 1):
            ngram = ids[end - n : end]
            window = ngram if self.seeding_scheme == "selfhash" else ngram[:-1]
            green += self.is_green(self.seed(window), ngram[-1])
            total += 1
        gamma = self.greenlist_ratio
        detector = f"transformers {_owner_version('transformers')} WatermarkDetector (ignore_repeated_ngrams=False)"
        method = "normal approximation: 0.5 * erfc(z / sqrt(2)), z against the nominal greenlist_ratio"
        if total == 0:
            return OwnerScore(detector, "z-score", float("nan"), 0, None, "too short: the owner raises ValueError")
        z = (green - gamma * total) / math.sqrt(total * gamma * (1 - gamma))
        return OwnerScore(detector, "z-score", z, total, 0.5 * math.erfc(z / math.sqrt(2)), method)


def hf_kgw_detector(
    *,
    hashing_key: int,
    vocab_size: int,
    greenlist_ratio: float = 0.25,
    seeding_scheme: str = "lefthash",
    context_width: int = 1,
    device: str = "cpu",
    alpha: float = ALPHA,
    dedup: Union[Dedup, str] = Dedup.PAIR,
) -> HfKgwDetector:
    """A detector of transformers' KGW watermark (``WatermarkingConfig`` /
    ``WatermarkLogitsProcessor``) with the owner's parameters; its ``detect``
    gives per-token green bits and an :class:`InteropReport`."""
    return HfKgwDetector(
        hashing_key=hashing_key,
        vocab_size=vocab_size,
        greenlist_ratio=greenlist_ratio,
        seeding_scheme=seeding_scheme,
        context_width=context_width,
        device=device,
        alpha=alpha,
        dedup=dedup,
    )


# ---------------------------------------------------------------------------
# SynthID-Text (transformers' SynthIDTextWatermarkLogitsProcessor, synthid-text)

_LCG_MULTIPLIER = 6364136223846793005
_MASK64 = (1 << 64) - 1


def _lcg(current: int, data: Sequence[int]) -> int:
    """The owner's ``accumulate_hash`` on one int64 (two's complement wrap)."""
    for x in data:
        current = (((current + x) & _MASK64) * _LCG_MULTIPLIER + 1) & _MASK64
    return current


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class SynthIdDetector:
    """SynthID-Text (the tournament watermark) read by tracemark.

    The g-value of layer ``d`` for the n-gram ending at a token is the owner's:
    ``table[lcg(lcg(1, ngram), keys[d]) mod table_size]``, with the owner's
    sampling table (``torch.randint(0, 2)`` under ``sampling_table_seed``; it
    depends on the torch generator's device like the owner's). The context is
    the ``ngram_len - 1`` previous completion tokens, zero-padded at the start
    (the owner's processor starts from zeros and never reads the prompt).

    Under the null (keys independent of the text) layer ``d``'s table index is
    uniform, so a g-value is 1 with probability ``ones(table) / table_size``
    (not exactly 1/2: the table is one fixed draw), and layers are independent:
    the count of ones over scored (token, layer) pairs is
    Binomial(``n * depth``, ``ones / table_size``). Observations are
    deduplicated on their tuple of table indices (equal tuples, equal
    g-values; with a power-of-two table that is the n-gram hash modulo the
    table size, which distinct n-grams share more often than one would think).
    """

    def __init__(
        self,
        *,
        keys: Sequence[int],
        ngram_len: int,
        sampling_table_size: int = 2**16,
        sampling_table_seed: int = 0,
        context_history_size: int = 1024,
        eos_token_id: Optional[int] = None,
        device: str = "cpu",
        alpha: float = ALPHA,
        dedup: Union[Dedup, str] = Dedup.PAIR,
    ) -> None:
        import torch

        keys = [int(k) for k in keys]
        if not keys:
            raise InvalidParameterError("keys: one key per tournament layer, at least one")
        if any(not -(2**63) <= k < 2**63 for k in keys):
            raise InvalidParameterError("keys must fit in int64, as the owner's torch tensor does")
        if ngram_len < 1:
            raise InvalidParameterError(f"ngram_len must be at least 1, got {ngram_len}")
        if sampling_table_size < 2:
            raise InvalidParameterError(f"sampling_table_size must be at least 2, got {sampling_table_size}")
        self.ngram_len = int(ngram_len)
        self.depth = len(keys)
        self.sampling_table_size = int(sampling_table_size)
        self.sampling_table_seed = int(sampling_table_seed)
        self.context_history_size = int(context_history_size)
        self.eos_token_id = eos_token_id
        self.device = device
        self.alpha = _alpha(alpha)
        self.dedup = _dedup(dedup)
        self._keys = keys
        generator = torch.Generator(device=device).manual_seed(self.sampling_table_seed)
        table = torch.randint(0, 2, (self.sampling_table_size,), generator=generator, device=device)
        self._table = table.cpu().numpy().astype(np.int8)
        ones = int(self._table.sum())
        if not 0 < ones < self.sampling_table_size:
            raise InvalidParameterError("the sampling table is constant: its g-values carry no watermark")
        #: The exact null probability of a g-value of 1.
        self.p_one = ones / self.sampling_table_size
        self.null = Null.binomial(self.depth, self.p_one)
        material = b",".join(str(k).encode() for k in keys)
        self.key_id = _key_id("synthid-text", material)
        self._public_key = tuple(keys) in _PUBLIC_SYNTHID_KEYS

    def __repr__(self) -> str:
        return f"SynthIdDetector(key_id={self.key_id!r}, ngram_len={self.ngram_len}, depth={self.depth})"

    @property
    def params(self) -> Dict[str, Any]:
        return {
            "ngram_len": self.ngram_len,
            "depth": self.depth,
            "sampling_table_size": self.sampling_table_size,
            "sampling_table_seed": self.sampling_table_seed,
            "p_one": self.p_one,
            "eos_token_id": self.eos_token_id,
            "device": self.device,
        }

    def indices(self, ngram: Sequence[int]) -> Tuple[int, ...]:
        """The owner's sampling-table index of each layer for one n-gram."""
        h = _lcg(1, ngram)
        return tuple(_signed(_lcg(h, (k,))) % self.sampling_table_size for k in self._keys)

    def g_values(self, ngram: Sequence[int]) -> npt.NDArray[np.int8]:
        """The owner's g-values (one per layer) of one n-gram."""
        return self._table[list(self.indices(ngram))]

    def detect(self, completion: _Ids) -> InteropDetection:
        """Test ``completion`` (the generated ids only: the owner's contexts never include the prompt)."""
        ids = _ids(completion, "completion")
        if not ids:
            raise EmptyInputError("there is no completion token to test")
        padded = [0] * (self.ngram_len - 1) + ids
        values = np.full((len(ids), self.depth), -1, dtype=np.int8)
        status = np.full(len(ids), TokenStatus.SCORED, dtype=np.int8)
        eos_at = ids.index(self.eos_token_id) if self.eos_token_id in ids else len(ids)
        dedup = _Deduper(self.dedup)
        ones, scored = 0, 0
        for i in range(len(ids)):
            ngram = padded[i : i + self.ngram_len]
            idx = self.indices(ngram)
            values[i] = self._table[list(idx)]
            if i >= eos_at:
                status[i] = TokenStatus.MASKED
            elif dedup.first(tuple(ngram[:-1]), idx):
                ones += int(values[i].sum())
                scored += 1
            else:
                status[i] = TokenStatus.DUPLICATE
        report = InteropReport(
            watermark="synthid-text",
            params=self.params,
            key_id=self.key_id,
            dedup=self.dedup,
            alpha=self.alpha,
            seen=len(ids),
            scored=scored,
            skipped_duplicate=int((status == TokenStatus.DUPLICATE).sum()),
            skipped_short_context=0,
            skipped_masked=int((status == TokenStatus.MASKED).sum()),
            outcome=_test(self.null, "g-value count", scored, float(ones)),
            owner=self._owner_score(ids, values[self.ngram_len - 1 :]),
            notes=(_PUBLIC_KEY_NOTE,) if self._public_key else (),
        )
        return InteropDetection(values=values, status=status, report=report)

    def owner_mask(self, ids: Sequence[int]) -> npt.NDArray[np.bool_]:
        """The owner's detector mask over the n-grams inside ``ids``
        (``compute_context_repetition_mask`` times ``compute_eos_token_mask``)."""
        ids = list(ids)
        n = len(ids) - self.ngram_len + 1
        mask = np.zeros(max(n, 0), dtype=bool)
        history: List[int] = []
        eos_at = ids.index(self.eos_token_id) if self.eos_token_id in ids else len(ids)
        for j in range(n):
            h = _lcg(1, ids[j : j + self.ngram_len - 1])
            # The owner's history starts as zeros: a context hashing to 0 counts as seen while any is left.
            repeated = h in history or (h == 0 and len(history) < self.context_history_size)
            history.insert(0, h)
            del history[self.context_history_size :]
            mask[j] = not repeated and j + self.ngram_len - 1 < eos_at
        return mask

    def _owner_score(self, ids: List[int], g: npt.NDArray[np.int8]) -> OwnerScore:
        """synthid-text's ``detector_mean.mean_score``: the mean g-value over the
        owner's mask of the n-grams inside the completion."""
        mask = self.owner_mask(ids)
        detector = (
            f"SynthID-Text mean detector (synthid-text detector_mean.mean_score; masks of transformers "
            f"{_owner_version('transformers')} SynthIDTextWatermarkLogitsProcessor)"
        )
        method = "none: the mean score is thresholded, the Bayesian detector gives a trained posterior"
        counted = int(mask.sum())
        if counted == 0:
            return OwnerScore(detector, "mean g-value", float("nan"), 0, None, method)
        score = float(g[mask].astype(np.int64).sum()) / (self.depth * counted)
        return OwnerScore(detector, "mean g-value", score, counted, None, method)


def synthid_detector(
    *,
    keys: Sequence[int],
    ngram_len: int,
    sampling_table_size: int = 2**16,
    sampling_table_seed: int = 0,
    context_history_size: int = 1024,
    eos_token_id: Optional[int] = None,
    device: str = "cpu",
    alpha: float = ALPHA,
    dedup: Union[Dedup, str] = Dedup.PAIR,
) -> SynthIdDetector:
    """A detector of SynthID-Text (``SynthIDTextWatermarkingConfig`` /
    ``SynthIDTextWatermarkLogitsProcessor``, synthid-text's
    ``SynthIDLogitsProcessor``) with the owner's keys and parameters; the
    depth is ``len(keys)``."""
    return SynthIdDetector(
        keys=keys,
        ngram_len=ngram_len,
        sampling_table_size=sampling_table_size,
        sampling_table_seed=sampling_table_seed,
        context_history_size=context_history_size,
        eos_token_id=eos_token_id,
        device=device,
        alpha=alpha,
        dedup=dedup,
    )


# ---------------------------------------------------------------------------
# vLLM's Gumbel watermark (--watermark-config, algorithm "gumbel", PRF "philox")

_U32 = np.uint64(0xFFFFFFFF)
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = 0x9E3779B9
_PHILOX_W1 = 0xBB67AE85
_CONTEXT_DOMAIN = 0x574D4358
_TOKEN_DOMAIN = 0x574D544B
_UNIFORM_BITS = 24


def _philox4x32_10(counter: List[np.ndarray], key: Tuple[np.ndarray, np.ndarray]) -> List[np.ndarray]:
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        p0 = _PHILOX_M0 * c0  # < 2^64: 32-bit by 32-bit
        p1 = _PHILOX_M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _U32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _U32
        c0, c1, c2, c3 = (hi1 ^ c1 ^ k0) & _U32, lo1, (hi0 ^ c3 ^ k1) & _U32, lo0
        if r != 9:
            k0 = (k0 + np.uint64(_PHILOX_W0)) & _U32
            k1 = (k1 + np.uint64(_PHILOX_W1)) & _U32
    return [c0, c1, c2, c3]


def _vllm_top_bits(words: np.ndarray) -> np.ndarray:
    """The top 24 bits ``m`` of vLLM's Philox words, as floats."""
    return (words >> np.uint64(8)).astype(np.float64)


def _vllm_uniform(m: np.ndarray) -> np.ndarray:
    """vLLM's float32 uniform of 24-bit values ``m``: ``(m + 1) / (2^24 + 1)``."""
    return ((m + 1.0) / (2**_UNIFORM_BITS + 1)).astype(np.float32)


def _vllm_status(dedup_mode: Dedup, contexts: List[Tuple[int, ...]], ids: List[int]) -> np.ndarray:
    """Per token: scored, or a duplicate under ``dedup_mode`` (vLLM's contexts never fall short)."""
    status = np.full(len(ids), TokenStatus.SCORED, dtype=np.int8)
    dedup = _Deduper(dedup_mode)
    for i, (context, token) in enumerate(zip(contexts, ids)):
        if not dedup.first(context, (context, token)):
            status[i] = TokenStatus.DUPLICATE
    return status


def _vllm_words(key: int, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """vLLM's ``PhiloxPRF`` (philox4x32-10-v1): the 32-bit word of each (context row, token)."""
    n, width = contexts.shape
    ctx = contexts.astype(np.int64).astype(np.uint64) & _U32
    full = np.full(n, 0, dtype=np.uint64)
    key0, key1 = full + np.uint64(key & 0xFFFFFFFF), full + np.uint64(key >> 32)
    state = [full + np.uint64(_CONTEXT_DOMAIN), full + np.uint64(width), full.copy(), full.copy()]
    for offset in range(0, width, 4):
        block = [
            ctx[:, offset + i] if offset + i < width else full + np.uint64(0xFFFFFFFF - i) for i in range(4)
        ]
        counter = [(state[i] ^ block[i]) & _U32 for i in range(4)]
        state = _philox4x32_10(counter, ((key0 ^ np.uint64(offset)) & _U32, key1))
    words = tokens.astype(np.int64).astype(np.uint64) & _U32
    out = _philox4x32_10(
        [words >> np.uint64(2), state[0], state[1], state[2]],
        ((key0 ^ state[3]) & _U32, (key1 ^ np.uint64(_TOKEN_DOMAIN)) & _U32),
    )
    lane = (words & np.uint64(3)).astype(np.int64)
    return np.choose(lane, out)


def _gamma_survival_integer_shape(score: float, shape: int) -> float:
    """vLLM's ``_gamma_survival_integer_shape``, as it computes it (linear space)."""
    if shape <= 0 or score <= 0:
        return 1.0
    log_score = math.log(score)
    log_term = 0.0
    max_log_term = 0.0
    log_terms = [log_term]
    for index in range(1, shape):
        log_term += log_score - math.log(index)
        log_terms.append(log_term)
        max_log_term = max(max_log_term, log_term)
    log_sum = max_log_term + math.log(sum(math.exp(term - max_log_term) for term in log_terms))
    return min(1.0, math.exp(min(0.0, -score + log_sum)))


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
        """The owner's 32-bit Philox word of every token."""
        ids_arr = np.asarray(ids, dtype=np.int64)
        return _vllm_words(self._key, self.contexts(ids), ids_arr)

    def uniforms(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's float32 uniform of every token."""
        return _vllm_uniform(_vllm_top_bits(self.words(ids)))

    def detect(self, completion: _Ids) -> InteropDetection:
        """Test ``completion`` (the generated ids only)."""
        ids = _ids(completion, "completion")
        if not ids:
            raise EmptyInputError("there is no completion token to test")
        m = _vllm_top_bits(self.words(ids))
        owner_scores = -np.log1p(-_vllm_uniform(m).astype(np.float64))
        exact_scores = -np.log1p(-m / 2.0**_UNIFORM_BITS)
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
            p_value=_gamma_survival_integer_shape(score, len(kept)),
            p_value_method="Gamma(n, 1) survival, exact in log space then exp: 0.0 below about 1e-308",
        )


# ---------------------------------------------------------------------------
# vLLM's dual-key Gumbel watermark (algorithm "dual_key_gumbel")


def _derive_vllm_key(key: int, domain: bytes) -> int:
    """vLLM's ``derive_watermark_key``: the first 8 bytes of SHA-256(domain ‖ key as 8 bytes, big-endian)."""
    return int.from_bytes(hashlib.sha256(domain + key.to_bytes(8, "big")).digest()[:8], "big")


def _lgammas(values: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(float(v)) for v in values.tolist()], dtype=np.float64)


def _weighted_gamma_log10_upper(null: Null, n: int, weights: Tuple[float, float], total: float) -> float:
    """``log10 P(a G + b G' >= total)`` for independent G, G' ~ Gamma(n, 1): the
    exact tail of ``n`` tokens each scoring ``a E + b E'`` (E, E' Exponential(1)).

    With ``lo = min(a, b) < hi = max(a, b)`` and ``p = lo / hi``, an
    Exponential of mean ``hi`` is a Geometric(p) number of Exponentials of mean
    ``lo``, so the sum is ``lo`` times a Gamma(2n + J, 1) with J negative
    binomial (n, p), and the tail is the positive series
    ``sum_j P(J = j) Q(2n + j, total / lo)`` (Q the regularized upper gamma): no
    cancellation, every term in log space. The series is cut where the
    remaining negative-binomial mass, bounded by a geometric series and added
    whole (so the result is an upper bound, never below the tail), is below
    ``e^-46`` of the sum.
    """
    if total <= 0.0:
        return 0.0
    lo, hi = sorted(weights)
    if lo == 0.0:
        return null.log10_upper(n, total / hi)
    if lo == hi:
        return null.log10_upper(2 * n, total / lo)
    p = lo / hi
    x = total / lo
    ln10, log_x, log_p, log_q = math.log(10.0), math.log(x), math.log(p), math.log1p(-p)
    log_q0 = null.log10_upper(2 * n, x) * ln10
    cut = int(n * (1 - p) / p + 10 * math.sqrt(n * (1 - p)) / p + 64)
    while True:
        j = np.arange(cut + 2, dtype=np.float64)
        k = 2 * n + j[:-1]
        # Q(k + 1, x) = Q(k, x) + x^k e^-x / k!, accumulated upwards from Q(2n, x)
        steps = k[:-1] * log_x - x - _lgammas(k[:-1] + 1)
        log_upper = np.minimum(np.logaddexp.accumulate(np.concatenate([[log_q0], steps])), 0.0)
        log_nb = _lgammas(n + j) - _lgammas(j + 1) - math.lgamma(n) + n * log_p + j * log_q
        terms = log_nb[:-1] + log_upper
        top = float(terms.max())
        log_sum = top + math.log(float(np.exp(terms - top).sum()))
        # P(J > cut) <= P(J = cut + 1) / (1 - r): the pmf ratio r_j = (n + j)(1 - p) / (j + 1) falls with j
        ratio = (n + cut + 1) * (1 - p) / (cut + 2)
        if ratio < 1.0:
            log_rest = float(log_nb[-1]) - math.log1p(-ratio)
            if log_rest < log_sum - 46.0:
                return min(0.0, float(np.logaddexp(log_sum, log_rest)) / ln10)
        cut *= 2


def _gammaincc(shape: float, x: float) -> float:
    """The regularized upper incomplete gamma ``Q(shape, x)`` in float64 (a
    series below ``shape + 1``, Lentz's continued fraction above), for the
    owner's non-integer moment-matched shape (torch's ``special.gammaincc``)."""
    if x <= 0.0:
        return 1.0
    log_prefactor = -x + shape * math.log(x) - math.lgamma(shape)
    if x < shape + 1.0:
        term = total = 1.0 / shape
        a = shape
        for _ in range(1_000_000):
            a += 1.0
            term *= x / a
            total += term
            if abs(term) < abs(total) * 1e-17:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_prefactor)))
    tiny = 1e-300
    b = x + 1.0 - shape
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 1_000_000):
        an = -i * (i - shape)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return min(1.0, math.exp(log_prefactor) * h)


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
        self._key_a = _derive_vllm_key(key, b"key_a")
        self._key_b = _derive_vllm_key(key, b"key_b")
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
        contexts, ids_arr = self.contexts(ids), np.asarray(ids, dtype=np.int64)
        return np.stack([_vllm_words(k, contexts, ids_arr) for k in (self._key_a, self._key_b)], axis=-1)

    def uniforms(self, ids: Sequence[int]) -> np.ndarray:
        """The owner's float32 uniforms of every token: column 0 under key A, column 1 under key B."""
        return _vllm_uniform(_vllm_top_bits(self.words(ids)))

    def detect(self, completion: _Ids) -> InteropDetection:
        """Test ``completion`` (the generated ids only)."""
        ids = _ids(completion, "completion")
        if not ids:
            raise EmptyInputError("there is no completion token to test")
        m = _vllm_top_bits(self.words(ids))
        a, b = self.weights
        owner_keys = -np.log1p(-_vllm_uniform(m).astype(np.float64))
        owner_scores = owner_keys[:, 0] * a + owner_keys[:, 1] * b
        exact_keys = -np.log1p(-m / 2.0**_UNIFORM_BITS)
        exact_scores = exact_keys[:, 0] * a + exact_keys[:, 1] * b
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
                log10_p=_weighted_gamma_log10_upper(self.null, n, self.weights, total),
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
        a = self.dual_key_alpha
        variance = (1 - a) ** 2 + a**2
        if n == 0:
            p_value = 1.0
        elif a in (0, 0.5, 1):
            p_value = _gamma_survival_integer_shape(score / variance, round(n / variance))
        else:
            p_value = _gammaincc(n / variance, score / variance)
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
