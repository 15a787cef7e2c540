"""tracemark in Hugging Face transformers: a ``LogitsProcessor`` for every scheme.

>>> from transformers import LogitsProcessorList
>>> from tracemark.hf import TracemarkLogitsProcessor
>>> processor = TracemarkLogitsProcessor(key, "kgw:gamma=0.25,delta=2,context=lefthash:1")  # doctest: +SKIP
>>> model.generate(**inputs, do_sample=True, logits_processor=LogitsProcessorList([processor]))  # doctest: +SKIP

CPU float32 scores are watermarked in place, without copying, in one batched
call into the Rust core (the GIL is released). Scores on another device are
not copied wholesale: for ``kgw`` the core computes each row's green list and
the bias is added on that device; ``tournament`` and ``gumbel`` rows travel to
the CPU and back.

``tournament`` and ``gumbel`` choose their own distribution (their scheme
string carries the temperature and, for tournament, top-k): generate with
``do_sample=True, temperature=1.0, top_k=0, top_p=1.0`` so that transformers'
own warpers leave the distribution alone.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
from transformers import LogitsProcessor

from ._native import Key, Scheme, SeenContexts

__all__ = ["TracemarkLogitsProcessor"]


class TracemarkLogitsProcessor(LogitsProcessor):
    """Watermarks each generation step with a tracemark scheme.

    Args:
        key: the watermark key.
        scheme: the scheme string, e.g. ``"kgw:gamma=0.25,delta=2,context=lefthash:1"``.
        vocab_size: the model's vocabulary size (the width of the scores); if
            None, it is taken from the first scores seen.
        skip_repeated: skip contexts already watermarked in each sequence
            (recommended for ``tournament`` and ``gumbel``).
        pad_token_id: left-padding id to strip from each row's history.
    """

    def __init__(
        self,
        key: Key,
        scheme: str,
        vocab_size: Optional[int] = None,
        *,
        skip_repeated: bool = False,
        pad_token_id: Optional[int] = None,
    ) -> None:
        self._key = key
        self._spec = scheme
        self._scheme: Optional[Scheme] = Scheme(key, scheme, vocab_size) if vocab_size is not None else None
        self._skip_repeated = skip_repeated
        self._pad = pad_token_id
        self._memories: List[SeenContexts] = []
        self._last_len = -1

    @property
    def scheme(self) -> Scheme:
        """The keyed scheme (built on the first call if no vocab_size was given)."""
        if self._scheme is None:
            raise RuntimeError("the scheme is built on the first call when vocab_size is not given")
        return self._scheme

    def _histories(self, input_ids: torch.LongTensor):
        ids = input_ids.detach().to("cpu", torch.int64).numpy()
        if self._pad is None:
            return np.ascontiguousarray(ids)
        rows = []
        for row in ids:
            start = 0
            while start < len(row) and row[start] == self._pad:
                start += 1
            rows.append(row[start:])
        return rows

    def _memories_for(self, batch: int, length: int) -> Optional[List[SeenContexts]]:
        if not self._skip_repeated:
            return None
        # Within one generate() call the input grows by exactly one token per step;
        # anything else is a new generation.
        if length != self._last_len + 1 or len(self._memories) != batch:
            self._memories = [SeenContexts() for _ in range(batch)]
        self._last_len = length
        return self._memories

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._scheme is None or self._scheme.vocab_size != scores.shape[-1]:
            self._scheme = Scheme(self._key, self._spec, int(scores.shape[-1]))
        scheme = self._scheme
        histories = self._histories(input_ids)
        memories = self._memories_for(scores.shape[0], input_ids.shape[-1])
        if scores.device.type == "cpu" and scores.dtype == torch.float32 and scores.is_contiguous():
            scheme.process_batch(histories, scores.numpy(), memories)
            return scores
        if scheme.kind == "kgw" and memories is None:
            masks = []
            for h in histories:
                m = scheme.green_mask(h)
                masks.append(np.zeros(scheme.vocab_size, dtype=bool) if m is None else m)
            mask = torch.from_numpy(np.stack(masks)).to(scores.device)
            return scores + mask.to(scores.dtype) * float(scheme.delta)
        cpu = scores.detach().to("cpu", torch.float32).contiguous()
        scheme.process_batch(histories, cpu.numpy(), memories)
        return cpu.to(scores.device, scores.dtype)
