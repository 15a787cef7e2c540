"""tracemark in vLLM: logits processors for both of vLLM's model runners.

- ``TracemarkLogitsProcessor``: the V1 GPU model runner's interface
  (``vllm.v1.sample.logits_processor.LogitsProcessor``:
  ``update_state(BatchUpdate)`` / ``apply(logits)``);
- ``TracemarkLogitsProcessorV2``: Model Runner V2's interface
  (``vllm.v1.worker.gpu.sample.logits_processor.LogitsProcessor``:
  ``add_request(slot, params)`` / ``apply(logits, LogitsContext)``), the
  default runner where Triton is present. V2's loader refuses V1 classes
  (and V1's loader V2 classes): name the one your runner uses.

Keys live on the server (``tracemark.serving``: ``TRACEMARK_KEY_FILE``,
``TRACEMARK_SCHEME``, ``TRACEMARK_UNLABELLED``, or vLLM's
``--additional-config '{"tracemark": {"key_file": ..., "scheme": ...}}'``).
Requests carry at most a label and an opt-out in ``vllm_xargs`` (flat:
``{"tracemark_label": "account/42"}``, ``{"tracemark": "off"}``)::

    TRACEMARK_KEY_FILE=/etc/tracemark/master.key \\
    TRACEMARK_SCHEME=kgw:gamma=0.25,delta=2,context=lefthash:1 \\
    vllm serve HuggingFaceTB/SmolLM2-135M-Instruct \\
        --logits-processors tracemark.vllm:TracemarkLogitsProcessorV2

    client.completions.create(model=..., prompt=...,
        extra_body={"vllm_xargs": {"tracemark_label": "account/42"}})

Each step the processor reads the last context-width ids of each watermarked
row (V2: one small device-to-host copy of ``rows × width`` ids), the Rust core
turns them into per-row seeds (a few bytes), and ``tracemark.device``
computes the keyed values and the scheme's step on the logits' device.

Both processors change the distribution (``is_argmax_invariant`` is False:
vLLM runs them before temperature, penalties and top-k/top-p, greedy batches
included). For ``tournament`` and ``gumbel``, which decide the distribution
themselves, sample with ``temperature=1.0, top_k=-1, top_p=1.0`` (the
scheme's temperature is in its configuration). Speculative decoding is
refused at start-up: the processors do not follow draft tokens.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality
from vllm.v1.sample.logits_processor import LogitsProcessor as V1LogitsProcessor
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState
from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as V2LogitsProcessor

from ._native import Scheme, SeenContexts
from .device import DeviceScheme
from .serving import ServerKeys, validate_request_args, window

__all__ = [
    "SPEC_DECODE_REFUSED",
    "TracemarkLogitsProcessor",
    "TracemarkLogitsProcessorV2",
]

log = logging.getLogger("tracemark.vllm")

SPEC_DECODE_REFUSED = (
    "tracemark's vLLM logits processors do not follow speculative decoding (draft tokens change the "
    "history of every later row): serve without --speculative-config, or watermark with vLLM's own "
    "--watermark-config dual_key_gumbel"
)


def _server_keys(vllm_config: Any) -> ServerKeys:
    """The server's keys, from ``additional_config["tracemark"]`` or the environment."""
    extra = getattr(vllm_config, "additional_config", None) or {}
    overrides = extra.get("tracemark") if isinstance(extra, dict) else None
    return ServerKeys.from_env(overrides=overrides)


def _refuse_spec_decode(vllm_config: Any) -> None:
    if getattr(vllm_config, "speculative_config", None) is not None:
        raise ValueError(SPEC_DECODE_REFUSED)


def _extra_args(params: Any) -> Optional[Dict[str, Any]]:
    return getattr(params, "extra_args", None) if params is not None else None


class _Request:
    """Per-request state: its label (None: the master key), its live token
    lists, its repeated-context memory."""

    __slots__ = ("label", "prompt", "output", "memory")

    def __init__(
        self, label: Optional[str], prompt: Optional[Sequence[int]], output: Sequence[int], memory: Optional[SeenContexts]
    ):
        self.label = label
        self.prompt = prompt
        self.output = output
        self.memory = memory


class _Watermark:
    """What both runners' processors share: keys, the device step."""

    def __init__(self, vllm_config: Any) -> None:
        _refuse_spec_decode(vllm_config)
        self.keys = _server_keys(vllm_config)
        self._device: Optional[DeviceScheme] = None
        self._vocab: Optional[int] = None
        self.placeholder_rows = 0  # rows left unwatermarked because their history was not yet known
        log.info(
            "tracemark: watermarking with %s under master key %s (unlabelled requests: %s)",
            self.keys.config,
            self.keys.master.id,
            self.keys.unlabelled,
        )

    def label_for(self, params: Any) -> tuple:
        """``(watermarked, label)`` of a request's sampling parameters (admission
        has checked them; a malformed label that got past it counts as none)."""
        return self.keys.label_for(_extra_args(params), strict=False)

    def memory(self) -> Optional[SeenContexts]:
        return SeenContexts() if self.keys.skip_repeated else None

    def device_scheme(self, vocab: int) -> DeviceScheme:
        if self._device is None or self._vocab != vocab:
            self._device = DeviceScheme(self.keys.config, vocab)
            self._vocab = vocab
        return self._device

    def step(
        self,
        logits: torch.Tensor,
        rows: List[int],
        schemes: List[Scheme],
        windows: List[List[int]],
        memories: Optional[List[SeenContexts]],
    ) -> torch.Tensor:
        """Watermarks ``logits[rows]`` in place (``windows[i]`` the last ids of row ``rows[i]``)."""
        if not rows:
            return logits
        d = self.device_scheme(int(logits.shape[-1]))
        seeds = d.row_seeds(schemes, windows, memories, logits.device)
        if len(rows) == logits.shape[0] and rows == list(range(len(rows))):
            logits.copy_(d.apply(logits, seeds))
        else:
            index = torch.tensor(rows, device=logits.device)
            logits[index] = d.apply(logits[index], seeds)
        return logits


class TracemarkLogitsProcessor(V1LogitsProcessor):
    """tracemark for vLLM's V1 GPU model runner (see the module doc)."""

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        validate_request_args(_extra_args(sampling_params))  # RequestArgsError is a ValueError: HTTP 400

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self._w = _Watermark(vllm_config)
        self._reqs: Dict[int, _Request] = {}

    def is_argmax_invariant(self) -> bool:
        # The watermark changes which token is most likely: vLLM must run it for greedy batches too.
        return False

    def update_state(self, batch_update: Optional[BatchUpdate]) -> None:
        if batch_update is None:
            return
        # In the order BatchUpdate prescribes: removed, added, moved.
        for index in batch_update.removed:
            self._reqs.pop(index, None)
        for index, params, prompt, output in batch_update.added:
            on, label = self._w.label_for(params)
            if on:
                self._reqs[index] = _Request(label, prompt, output, self._w.memory())
            else:
                self._reqs.pop(index, None)
        for a, b, direction in batch_update.moved:
            ra = self._reqs.pop(a, None)
            rb = self._reqs.pop(b, None)
            if ra is not None:
                self._reqs[b] = ra
            if rb is not None and direction == MoveDirectionality.SWAP:
                self._reqs[a] = rb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self._reqs:
            return logits
        vocab = int(logits.shape[-1])
        width = self._w.keys.width
        rows: List[int] = []
        schemes: List[Scheme] = []
        windows: List[List[int]] = []
        memories: List[SeenContexts] = []
        for index in sorted(self._reqs):
            if index >= logits.shape[0]:
                continue
            r = self._reqs[index]
            w = window(r.prompt, r.output, width)
            if -1 in w:
                # An async-scheduling placeholder not yet replaced by the sampled id
                # (vLLM repairs them before apply for processors named in
                # --logits-processors): leave the row as it is rather than guess.
                self._w.placeholder_rows += 1
                continue
            rows.append(index)
            schemes.append(self._w.keys.scheme_for(r.label, vocab))
            windows.append(w)
            if r.memory is not None:
                memories.append(r.memory)
        return self._w.step(logits, rows, schemes, windows, memories if self._w.keys.skip_repeated else None)


class TracemarkLogitsProcessorV2(V2LogitsProcessor):
    """tracemark for vLLM's Model Runner V2 (see the module doc)."""

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        validate_request_args(_extra_args(sampling_params))  # RequestArgsError is a ValueError: HTTP 400

    def __init__(self, vllm_config: Any, req_states: LogitsProcRequestState) -> None:
        super().__init__(vllm_config, req_states)
        self._w = _Watermark(vllm_config)
        self._states = req_states
        n = int(req_states.max_num_reqs)
        self._on = np.zeros(n, dtype=bool)
        self._labels: List[Optional[str]] = [None] * n
        self._memories: List[Optional[SeenContexts]] = [None] * n

    def add_request(self, req_idx: int, sampling_params: Any) -> bool:
        # Slots are recycled without a remove callback: reset everything of the slot.
        on, label = self._w.label_for(sampling_params)
        self._on[req_idx] = on
        self._labels[req_idx] = label
        self._memories[req_idx] = self._w.memory() if on else None
        return bool(on)

    def apply(self, logits: torch.Tensor, ctx: LogitsContext) -> torch.Tensor:
        slots_all = np.asarray(ctx.idx_mapping_np)
        if logits.shape[0] != slots_all.shape[0]:
            raise ValueError(SPEC_DECODE_REFUSED)
        active = np.flatnonzero(self._on[slots_all])
        if active.size == 0:
            return logits
        slots = slots_all[active]
        seq_lens = np.asarray(ctx.seq_lens_upper_bound_np)[active].astype(np.int64)
        # Rows of a chunked prefill that has not reached the end of its prompt are
        # sampled and thrown away: leave them (and the repeated-context memory) alone.
        prefill = np.asarray(self._states.prefill_len.np)[slots]
        keep = seq_lens >= prefill
        active, slots, seq_lens = active[keep], slots[keep], seq_lens[keep]
        if active.size == 0:
            return logits
        width = self._w.keys.width
        windows: List[List[int]] = [[] for _ in range(len(active))]
        if width > 0:
            # One small device-to-host copy: the last `width` ids of each active row.
            offsets = np.arange(-width, 0, dtype=np.int64)
            cols = np.maximum(seq_lens[:, None] + offsets[None, :], 0)
            tokens = self._states.all_token_ids.gpu
            ids = tokens[
                torch.as_tensor(slots, device=tokens.device)[:, None],
                torch.as_tensor(cols, device=tokens.device),
            ].cpu().numpy()
            windows = [ids[i, max(width - int(seq_lens[i]), 0) :].tolist() for i in range(len(active))]
        vocab = int(logits.shape[-1])
        schemes = [self._w.keys.scheme_for(self._labels[s], vocab) for s in slots]
        memories = [self._memories[s] for s in slots] if self._w.keys.skip_repeated else None
        return self._w.step(logits, active.tolist(), schemes, windows, memories)  # type: ignore[arg-type]

