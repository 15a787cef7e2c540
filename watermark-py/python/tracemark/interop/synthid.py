"""SynthID-Text (transformers' ``SynthIDTextWatermarkLogitsProcessor``,
synthid-text's ``SynthIDLogitsProcessor``) read by tracemark.

The owner's n-gram hash (its ``accumulate_hash``, a 64-bit LCG) and the
sampling-table indices are computed by the verifier
(``tracemark_verifier::interop::synthid``, through the native bindings); the
sampling table itself is the owner's ``torch.randint`` draw under its seed.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from .. import _native
from .._native import EmptyInputError, InvalidParameterError, Null
from .report import (
    _PUBLIC_KEY_NOTE,
    _PUBLIC_SYNTHID_KEYS,
    ALPHA,
    Dedup,
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
    _owner_version,
    _test,
)

__all__ = ["SynthIdDetector", "synthid_detector"]


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
        ids = np.asarray(list(ngram), dtype=np.int64)
        if len(ids) == 0:
            raise InvalidParameterError("an n-gram has at least one token")
        row = _native.synthid_table_indices(self._keys, len(ids), self.sampling_table_size, ids)[-1]
        return tuple(int(i) for i in row)

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
        table_indices = _native.synthid_table_indices(
            self._keys, self.ngram_len, self.sampling_table_size, np.asarray(ids, dtype=np.int64)
        )
        values[:] = self._table[table_indices]
        for i in range(len(ids)):
            if i >= eos_at:
                status[i] = TokenStatus.MASKED
            elif dedup.first(tuple(padded[i : i + self.ngram_len - 1]), tuple(table_indices[i].tolist())):
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
        hashes = _native.synthid_context_hashes(self.ngram_len, np.asarray(ids, dtype=np.int64)).tolist()
        for j in range(n):
            h = hashes[j]
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
