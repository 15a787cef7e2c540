"""transformers' KGW watermark (``WatermarkingConfig`` /
``WatermarkLogitsProcessor``) read by tracemark.

The owner's seeds and green lists are computed with torch, not by tracemark:
the green list is ``torch.randperm`` under a ``torch.Generator`` seeded with
the owner's seed, and that generator *is* the owner's PRF (it differs between
CPU and CUDA). The exact binomial tail and the owner's normal-tail p-value are
the verifier's (``tracemark.Null``, ``tracemark._native.hf_kgw_owner_z_p``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

import numpy as np

from .. import _native
from .._native import EmptyInputError, InvalidParameterError, Null
from .report import (
    _PUBLIC_HF_KEYS,
    _PUBLIC_KEY_NOTE,
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

__all__ = ["HfKgwDetector", "hf_kgw_detector"]


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
        detector = f"transformers {_owner_version('transformers')} WatermarkDetector (ignore_repeated_ngrams=False)"
        method = "normal approximation: 0.5 * erfc(z / sqrt(2)), z against the nominal greenlist_ratio"
        z_p = _native.hf_kgw_owner_z_p(green, total, self.greenlist_ratio)
        if z_p is None:
            return OwnerScore(detector, "z-score", float("nan"), 0, None, "too short: the owner raises ValueError")
        return OwnerScore(detector, "z-score", z_p[0], total, z_p[1], method)


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
