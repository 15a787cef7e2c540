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

Layered generation (the semantic layer of ``docs/semantic.md`` over any
token-level processor): ``generate_layered(model, tokenizer, prompt_ids,
processor, tm.Semantic(key, "semantic:gamma=0.25,planes=8,chain=previous"),
tm.Embedder(), max_new_tokens=200)`` resamples each sentence until it lands
in a green region, and returns the ids with ``LayeredStats``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, List, NamedTuple, Optional, Tuple, Union

import numpy as np
import torch
from transformers import LogitsProcessor

from ._native import (
    Embedder,
    InvalidParameterError,
    Key,
    Receipt,
    Scheme,
    SchemeConfig,
    SeenContexts,
    Semantic,
    SigningKey,
    sentence_spans,
    sign_receipt,
)
from .device import DeviceScheme
from .scoring import context_width

__all__ = [
    "DEFAULT_MAX_CANDIDATES",
    "Generated",
    "Layered",
    "LayeredStats",
    "TracemarkLogitsProcessor",
    "generate_layered",
    "generate_text",
]


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
        # Those steps' one call (Scheme.process_tail), once the scheme is built.
        self._tail = self._scheme.process_tail if self._scheme is not None and self._single_row else None

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
        tail = self._tail
        if tail is not None:
            # The common decode step (CPU float32 rows, no padding or memory): numpy views of the whole
            # ids and the rows (no copy) and one call into the core, which reads each row's last
            # `width` ids; it returns None, changing nothing, for any other layout or vocabulary.
            try:
                ids, rows = input_ids.numpy(), scores.numpy()
            except (TypeError, RuntimeError):  # not on the CPU, a dtype numpy lacks, or a tensor needing grad
                ids = None
            if ids is not None and tail(ids, rows) is not None:
                return scores
        batch, vocab = scores.shape
        scheme = self._scheme
        if scheme is None or self._vocab != vocab:
            scheme = self._scheme = self._config.build(self._key, vocab)
            self._vocab = vocab
            self._device = None
            self._tail = scheme.process_tail if self._single_row else None
        on_cpu = scores.is_cpu and scores.dtype is torch.float32 and scores.is_contiguous()
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


#: The default cap on candidates per sentence in ``generate_layered`` (the
#: Rust decoder's ``tracemark_candle::layered::DEFAULT_MAX_CANDIDATES``): a
#: candidate passes with probability about ``gamma * P(margin)`` (about 0.2
#: at gamma = 0.25 and the default margin), so a sentence takes about 5 on
#: average and reaches 16 with probability about 3%.
DEFAULT_MAX_CANDIDATES = 16


@dataclass
class LayeredStats:
    """What the sentence layer of ``generate_layered`` cost and did (the
    fields of the Rust decoder's ``LayeredStats``)."""

    sentences: int = 0
    """Scored sentences that were steered."""
    candidates: int = 0
    """Candidates tested, over all sentences."""
    candidates_per_sentence: List[int] = field(default_factory=list)
    """Candidates tested for each sentence tested at least once, in order
    (a sentence cut by ``max_new_tokens`` after rejections included, last)."""
    cap_hits: int = 0
    """Sentences kept at the cap without passing."""
    tokens_generated: int = 0
    """Tokens sampled, rejected candidates included (the stop token too)."""
    tokens_kept: int = 0
    """Tokens in the answer."""
    unsteered_final: bool = False
    """Whether the answer ends with a scored sentence cut by
    ``max_new_tokens`` (not steered)."""
    regions: List[int] = field(default_factory=list)
    """Regions of the steered sentences as kept, in order."""
    embed_time: float = 0.0
    """Seconds spent embedding candidates."""
    wall_time: float = 0.0
    """Seconds for the whole generation."""

    @property
    def mean_candidates(self) -> float:
        """Mean candidates per tested sentence (0 when none was tested)."""
        return self.candidates / len(self.candidates_per_sentence) if self.candidates_per_sentence else 0.0

    @property
    def tokens_per_kept(self) -> float:
        """Tokens sampled per token kept."""
        return self.tokens_generated / max(self.tokens_kept, 1)


class Layered(NamedTuple):
    """What ``generate_layered`` returns."""

    ids: List[int]
    """The answer's token ids (the prompt and the stop token excluded)."""
    stopped: bool
    """Whether the stop token ended it."""
    stats: LayeredStats
    """The sentence layer's cost."""


def _crop(cache: Any, length: int) -> None:
    """Cuts a transformers cache back to its first ``length`` positions (a
    negative ``crop`` removes that many: the form transformers 4 and 5 both
    take)."""
    remove = cache.get_seq_length() - length
    if remove > 0:
        cache.crop(-remove)


def _restore_memory(processor: Any, ids: List[int], prompt_len: int) -> None:
    """Puts a ``skip_repeated`` processor's repeated-context memory back to
    what it was when ``ids`` (prompt included) had just been sampled, by
    replaying the contexts of the kept tokens into a fresh memory (the
    contexts of rejected candidates must not stay in it)."""
    if not getattr(processor, "skip_repeated", False) or not isinstance(processor, TracemarkLogitsProcessor):
        return
    scheme = processor.scheme
    width = context_width(processor.config)
    memory = SeenContexts()
    row = np.zeros(processor._vocab or 0, dtype=np.float32)
    for p in range(prompt_len, len(ids)):
        scheme.process(ids[max(p - width, 0) : p], row, memory)
    processor._memories = [memory]
    processor._last_ids = np.asarray([ids[:-1]], dtype=np.int64) if len(ids) > prompt_len else None


def generate_layered(
    model: Any,
    tokenizer: Any,
    prompt_ids: Any,
    logits_processor: Optional[LogitsProcessor],
    semantic: Semantic,
    embedder: Embedder,
    max_new_tokens: int,
    *,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    eos_token_id: Optional[int] = None,
    seed: int = 0,
) -> Layered:
    """Layered generation with a transformers causal LM: the token layer is
    ``logits_processor`` (a ``TracemarkLogitsProcessor``, any
    ``LogitsProcessor``, or None), applied to each step's scores as
    ``model.generate`` would, then sampled at temperature 1 from a
    ``torch.Generator`` seeded with ``seed`` (as ``generate(do_sample=True,
    temperature=1.0, top_k=0, top_p=1.0)``); the sentence layer is
    ``semantic``'s rejection sampling, with the rule of the Rust decoder
    (``tracemark_candle::layered``, ``docs/semantic.md`` "Generation"):

    - after each token the decoded answer (``tokenizer.decode(ids,
      skip_special_tokens=True)``, the text a caller publishes) is cut by
      ``tracemark.sentence_spans``; a sentence is complete when the next one
      has begun, or at the stop token;
    - a complete scored sentence (``semantic.is_scored``) is embedded by
      ``embedder`` and accepted iff ``semantic.accepts_after(previous,
      embedding)``, ``previous`` being the region of the previous scored
      sentence kept; else the ids and the KV cache (``DynamicCache.crop``)
      go back to the sentence's start and it is sampled again;
    - at most ``max_candidates`` candidates per sentence; at the cap the one
      of largest signed margin is kept (its KV cache recomputed from the
      sentence's start) and counted in ``stats.cap_hits``;
    - the last sentence of an answer cut by ``max_new_tokens`` is not
      resampled.

    ``prompt_ids``: the prompt's ids (a list, or a ``[1, n]`` / ``[n]``
    tensor). ``eos_token_id``: the stop token (default: the tokenizer's).
    Returns the ids and ``LayeredStats``; the same ``seed`` gives the same
    answer.
    """
    if max_candidates < 1:
        raise InvalidParameterError(f"max_candidates must be at least 1, e.g. {DEFAULT_MAX_CANDIDATES}; got {max_candidates}")
    if max_new_tokens < 0:
        raise InvalidParameterError(f"max_new_tokens must be at least 0; got {max_new_tokens}")
    from transformers import DynamicCache

    start_time = time.perf_counter()
    prompt = torch.as_tensor(prompt_ids).reshape(-1).tolist()
    if not prompt:
        raise InvalidParameterError("layered generation needs a non-empty prompt")
    stop = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    device = model.device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    stats = LayeredStats()
    n_prompt = len(prompt)

    cache = DynamicCache()

    def forward(new: List[int]) -> torch.Tensor:
        with torch.no_grad():
            out = model(
                input_ids=torch.tensor([new], device=device), past_key_values=cache, use_cache=True
            )
        return out.logits[:, -1, :].float()

    ids = list(prompt)
    logits = forward(ids)
    # The sentence's start: ids, next-token logits, open text offset, previous region.
    at: Tuple[int, torch.Tensor, int, Optional[int]] = (len(ids), logits, 0, None)
    tried = 0
    best: Optional[tuple] = None
    stopped = False
    _restore_memory(logits_processor, ids, n_prompt)
    while True:
        if len(ids) - n_prompt >= max_new_tokens:
            text = tokenizer.decode(ids[n_prompt:], skip_special_tokens=True)
            stats.unsteered_final = any(
                a >= at[2] and semantic.is_scored(text[a:b]) for a, b in sentence_spans(text)
            )
            if tried:
                stats.candidates_per_sentence.append(tried)
            break
        # A copy: the processor works in place, and the checkpoint's logits are reused on a rollback.
        scores = logits.to("cpu", torch.float32).clone()
        if logits_processor is not None:
            scores = logits_processor(torch.tensor([ids], dtype=torch.int64), scores)
        probs = torch.softmax(scores[0].double(), dim=-1)
        tok = int(torch.multinomial(probs, 1, generator=generator))
        stats.tokens_generated += 1
        is_stop = tok == stop
        if not is_stop:
            ids.append(tok)
        text = tokenizer.decode(ids[n_prompt:], skip_special_tokens=True)
        open_spans = [(a, b) for a, b in sentence_spans(text) if a >= at[2]]
        complete = len(open_spans) if is_stop else max(len(open_spans) - 1, 0)
        if complete == 0:
            if is_stop:
                if tried:
                    stats.candidates_per_sentence.append(tried)
                stopped = True
                break
            logits = forward([tok])
            continue
        scored = [text[a:b] for a, b in open_spans[:complete] if semantic.is_scored(text[a:b])]
        previous = at[3]
        regions: List[int] = []
        passed, signed = True, float("inf")
        if scored:
            t = time.perf_counter()
            embeddings = embedder.embed(scored)
            stats.embed_time += time.perf_counter() - t
            for e in embeddings:
                p = semantic.project(e)
                green = semantic.is_green_after(previous, p.region)
                passed = passed and semantic.accepts_after(previous, e)
                signed = min(signed, p.margin if green else -p.margin)
                previous = p.region
                regions.append(p.region)
            tried += 1
            stats.candidates += 1
        text_start = open_spans[complete][0] if complete < len(open_spans) else len(text)
        candidate = (signed, list(ids), None if is_stop else tok, text_start, previous, regions, len(scored))
        keep = None
        if not scored or passed:
            keep = candidate
        else:
            if best is None or signed > best[0]:
                best = candidate
            if tried >= max_candidates:
                stats.cap_hits += 1
                keep = best
        if keep is None:
            # Rejected: back to the sentence's start.
            n, logits, _, _ = at
            del ids[n:]
            _crop(cache, n)
            _restore_memory(logits_processor, ids, n_prompt)
            continue
        _, kept_ids, pending, text_start, previous, regions, n_scored = keep
        if n_scored:
            stats.sentences += n_scored
            stats.regions.extend(regions)
        if tried:
            stats.candidates_per_sentence.append(tried)
        tried, best = 0, None
        if pending is None:
            ids = kept_ids
            stopped = True
            break
        if kept_ids != ids or cache.get_seq_length() != len(ids) - 1:
            # An earlier candidate kept at the cap: recompute its cache from the sentence's start.
            _crop(cache, at[0])
            ids = kept_ids
            _restore_memory(logits_processor, ids, n_prompt)
            logits = forward(ids[at[0] :])
        else:
            logits = forward([pending])
        at = (len(ids), logits, text_start, previous)
    stats.tokens_kept = len(ids) - n_prompt
    stats.wall_time = time.perf_counter() - start_time
    return Layered(ids[n_prompt:], stopped, stats)
