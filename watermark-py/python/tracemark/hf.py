"""tracemark in Hugging Face transformers: a ``LogitsProcessor`` for every scheme.

>>> from transformers import LogitsProcessorList
>>> from tracemark.hf import TracemarkLogitsProcessor
>>> processor = TracemarkLogitsProcessor(key, "kgw:gamma=0.25,delta=2,context=lefthash:1")  # doctest: +SKIP
>>> model.generate(**inputs, do_sample=True, logits_processor=LogitsProcessorList([processor]))  # doctest: +SKIP

CPU float32 scores are watermarked in place, without copying, in one batched
call into the Rust core (the GIL is released). Scores on an accelerator (or of
another dtype) never leave their device: the core computes each row's seeds
(a few bytes) and ``tracemark.device`` computes the keyed values and the
scheme's step where the scores are, bit-exact with the core (SPEC §6–9).
Only the last context-width ids of each row are read per step.

When the contract says the scheme controls sampling
(``scheme.contract.controls_sampling``), generate with
``do_sample=True, temperature=1.0, top_k=0, top_p=1.0`` (or greedily) so that
transformers' own warpers leave the distribution alone: the scheme's
temperature and top-k are in its configuration.

Provenance receipts: ``generate_text`` generates, decodes and, given a
``SigningKey``, signs a receipt of the decoded text (its hashes, the model,
the time, the scheme and the watermark key's public id, the label)::

    out = generate_text(model, tokenizer, processor, "Describe a market.", signer=signer,
                        label="account/alice", max_new_tokens=120, do_sample=True)  # doctest: +SKIP
    out.text, out.receipt.to_json()  # doctest: +SKIP

or sign text you decoded yourself with ``processor.receipt(signer, text, model_name)``.
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Union

import numpy as np
import torch
from transformers import LogitsProcessor

from ._native import Key, Receipt, Scheme, SchemeConfig, SeenContexts, SigningKey, sign_receipt
from .device import DeviceScheme
from .scoring import context_width

__all__ = ["Generated", "TracemarkLogitsProcessor", "generate_text"]


class TracemarkLogitsProcessor(LogitsProcessor):
    """Watermarks each generation step with a tracemark scheme.

    Args:
        key: the watermark key.
        scheme: a ``SchemeConfig`` or a scheme string, e.g.
            ``"kgw:gamma=0.25,delta=2,context=lefthash:1"``.
        vocab_size: the model's vocabulary size (the width of the scores); if
            None, it is taken from the first scores seen.
        skip_repeated: skip contexts already watermarked in each sequence;
            None (the default) follows the scheme's contract
            (``scheme.contract.skip_repeated``: on for ``tournament`` and
            ``gumbel``, off for ``kgw``).
        pad_token_id: left-padding id to strip from each row's history.

    A processor may be reused across ``generate`` calls. With
    ``skip_repeated``, a call continues the previous one's sequences only when
    each row's ids extend that row's previous ids (the earlier ids unchanged,
    new ones appended); anything else starts new sequences with empty memories.
    """

    def __init__(
        self,
        key: Key,
        scheme: Union[str, SchemeConfig],
        vocab_size: Optional[int] = None,
        *,
        skip_repeated: Optional[bool] = None,
        pad_token_id: Optional[int] = None,
    ) -> None:
        self._key = key
        self._config = scheme if isinstance(scheme, SchemeConfig) else SchemeConfig(scheme)
        self._scheme: Optional[Scheme] = self._config.build(key, vocab_size) if vocab_size is not None else None
        self._vocab: Optional[int] = vocab_size
        self._skip_repeated = self._config.contract.skip_repeated if skip_repeated is None else bool(skip_repeated)
        self._pad = pad_token_id
        self._memories: List[SeenContexts] = []
        self._last_ids: Optional[np.ndarray] = None
        self._device: Optional[DeviceScheme] = None
        self._width = context_width(self._config)
        # Steps of one row without padding or memory take the shortest path into the core.
        self._single_row = self._pad is None and not self._skip_repeated

    @property
    def scheme(self) -> Scheme:
        """The keyed scheme (built on the first call if no vocab_size was given)."""
        if self._scheme is None:
            raise RuntimeError("the scheme is built on the first call when vocab_size is not given")
        return self._scheme

    @property
    def config(self) -> SchemeConfig:
        """The scheme configuration."""
        return self._config

    @property
    def key_id(self) -> str:
        """The public id of the watermark key (what a receipt states)."""
        return self._key.id

    def receipt(
        self,
        signer: SigningKey,
        text: str,
        model: str,
        *,
        label: Optional[str] = None,
        created: Optional[str] = None,
    ) -> Receipt:
        """A signed provenance receipt of ``text`` (exactly as returned to the
        caller), stating this processor's scheme and key id."""
        return sign_receipt(signer, text, model, scheme=self._config, key_id=self._key.id, label=label, created=created)

    @property
    def skip_repeated(self) -> bool:
        """Whether contexts already watermarked in a sequence are skipped."""
        return self._skip_repeated

    def _histories(self, ids: np.ndarray, width: int):
        """The last ``width`` ids of each row's history (all of a shorter
        one), after stripping left padding: all that a seed reads."""
        if self._pad is None:
            return ids[:, max(ids.shape[1] - width, 0) :]
        rows = []
        for row in ids:
            start = 0
            while start < len(row) and row[start] == self._pad:
                start += 1
            rows.append(row[max(start, len(row) - width) :])
        return rows

    def _memories_for(self, ids: np.ndarray) -> Optional[List[SeenContexts]]:
        if not self._skip_repeated:
            return None
        # A row continues the previous call's sequence only if its ids extend
        # that row's previous ids: the same ids first, then the new tokens. The
        # length alone says nothing (a new prompt may be one token longer).
        last = self._last_ids
        batch, length = ids.shape
        if last is None or len(self._memories) != batch or last.shape[0] != batch or length <= last.shape[1]:
            self._memories = [SeenContexts() for _ in range(batch)]
        else:
            continues = (ids[:, : last.shape[1]] == last).all(axis=1)
            for i in np.flatnonzero(~continues):
                self._memories[i] = SeenContexts()
        self._last_ids = ids.copy()
        return self._memories

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, vocab = scores.shape
        if self._scheme is None or self._vocab != vocab:
            self._scheme = self._config.build(self._key, vocab)
            self._vocab = vocab
            self._device = None
        scheme = self._scheme
        on_cpu = scores.device.type == "cpu" and scores.dtype == torch.float32 and scores.is_contiguous()
        if batch == 1 and on_cpu and self._single_row and input_ids.device.type == "cpu":
            # The common decode step (one CPU row): the window as a short list, one call into the core.
            n = int(input_ids.shape[1])
            scheme.process(input_ids.numpy()[0, max(n - self._width, 0) :].tolist(), scores.numpy()[0])
            return scores
        if input_ids.device.type == "cpu" and input_ids.dtype == torch.int64:
            ids = input_ids.numpy()  # a view: no copy
        else:
            if self._pad is None and not self._skip_repeated:
                # Only the window crosses to the host (batch × width ids).
                ids = input_ids[:, max(int(input_ids.shape[1]) - self._width, 0) :].to("cpu", torch.int64).numpy()
            else:
                ids = input_ids.detach().to("cpu", torch.int64).numpy()
        memories = self._memories_for(ids)
        histories = self._histories(ids, self._width)
        if on_cpu:
            rows = scores.numpy()
            if len(rows) == 1:
                # One row: the single-row call skips the batch's bookkeeping.
                scheme.process(histories[0], rows[0], None if memories is None else memories[0])
            else:
                scheme.process_batch(histories, rows, memories)
            return scores
        # Elsewhere the keyed values are computed where the scores are.
        if self._device is None:
            self._device = DeviceScheme(self._config, vocab, scores.device)
        seeds = self._device.row_seeds([scheme] * len(histories), histories, memories, scores.device)
        return self._device.apply(scores, seeds)  # type: ignore[return-value]


class Generated(NamedTuple):
    """What ``generate_text`` returns."""

    text: str
    """The decoded answer (special tokens skipped), exactly as a caller would get it."""
    ids: List[int]
    """The generated token ids (the prompt excluded)."""
    receipt: Optional[Receipt]
    """The signed receipt of ``text``, when a signer was given."""


def generate_text(
    model: Any,
    tokenizer: Any,
    processor: TracemarkLogitsProcessor,
    prompt: str,
    *,
    signer: Optional[SigningKey] = None,
    model_name: Optional[str] = None,
    label: Optional[str] = None,
    chat: bool = True,
    **generate_kwargs: Any,
) -> Generated:
    """Generates one watermarked answer to ``prompt`` and decodes it; with a
    ``signer``, also signs a receipt of the decoded text.

    Args:
        model, tokenizer: a transformers causal LM and its tokenizer.
        processor: the watermark (its key is the one the receipt states: for
            an account, build it with ``master.derive(label)``).
        prompt: the user's message (put through the chat template when
            ``chat`` and the tokenizer has one), or the raw prompt.
        signer: the receipt signing key; None for no receipt.
        model_name: the model the receipt states (default: the model's
            ``name_or_path``).
        label: the account or cohort label the receipt states.
        generate_kwargs: passed to ``model.generate`` (``max_new_tokens``,
            ``do_sample``, ...).
    """
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt"
        )
        if hasattr(ids, "input_ids"):  # transformers >= 4.5x returns a BatchEncoding
            ids = ids["input_ids"]
    else:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    ids = ids.to(model.device)
    generate_kwargs.setdefault("pad_token_id", tokenizer.eos_token_id)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), logits_processor=[processor], **generate_kwargs)
    new = out[0, ids.shape[1] :].tolist()
    text = tokenizer.decode(new, skip_special_tokens=True)
    receipt = None
    if signer is not None:
        name = model_name or str(getattr(model, "name_or_path", "") or type(model).__name__)
        receipt = processor.receipt(signer, text, name, label=label)
    return Generated(text, new, receipt)
