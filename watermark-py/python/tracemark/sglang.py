"""tracemark in SGLang: a ``CustomLogitProcessor``.

Keys live on the server (``tracemark.serving``: ``TRACEMARK_KEY_FILE``,
``TRACEMARK_SCHEME``, ``TRACEMARK_UNLABELLED`` in the environment of
``sglang.launch_server``); a request carries the processor's string and at
most a label and an opt-out in ``custom_params``::

    TRACEMARK_KEY_FILE=/etc/tracemark/master.key \\
    TRACEMARK_SCHEME=kgw:gamma=0.25,delta=2,context=lefthash:1 \\
    python -m sglang.launch_server --model-path HuggingFaceTB/SmolLM2-135M-Instruct \\
        --enable-custom-logit-processor

    from tracemark.sglang import TracemarkSGLangProcessor
    client.completions.create(model=..., prompt=..., extra_body={
        "custom_logit_processor": TracemarkSGLangProcessor.to_str(),
        "custom_params": {"tracemark_label": "account/42"}})

SGLang pickles the class by reference: the server must have ``tracemark``
installed. ``custom_params`` must be a dict (``{}`` at least): only then does
SGLang hand the processor the request (``__req__``), whose history it reads.
SGLang applies a processor only to requests that name it, so a deployment that
watermarks every answer adds the string and the account label in the gateway
in front of SGLang. Rows without a request are left unchanged and counted
(``TracemarkSGLangProcessor.unwatermarked_rows``); a malformed label counts
as no label (it never opts a request out).

Each call reads the last context-width ids of each row's request
(``origin_input_ids`` + ``output_ids``), the Rust core turns them into seeds,
and ``tracemark.device`` computes the step on the logits' device. SGLang
passes the processor a copy of its rows and keeps what it returns.
Untested here on a GPU: SGLang's overlap scheduler may append the last
sampled id to ``output_ids`` after the next step's logits are processed; until
that is checked on a GPU, serve with ``--disable-overlap-schedule``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import torch
from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

from ._native import Scheme, SeenContexts
from .device import DeviceScheme
from .serving import ServerKeys, window

__all__ = ["TracemarkSGLangProcessor"]

log = logging.getLogger("tracemark.sglang")


class _State:
    """What outlives one processor instance (SGLang makes a new one per batch):
    the server's keys, the device step, each request's repeated-context memory."""

    lock = threading.Lock()
    keys: Optional[ServerKeys] = None
    devices: Dict[int, DeviceScheme] = {}
    memories: "OrderedDict[str, SeenContexts]" = OrderedDict()
    max_memories = 65536

    @classmethod
    def server_keys(cls) -> ServerKeys:
        with cls.lock:
            if cls.keys is None:
                cls.keys = ServerKeys.from_env()
                log.info("tracemark: watermarking with %s under master key %s", cls.keys.config, cls.keys.master.id)
            return cls.keys

    @classmethod
    def device(cls, keys: ServerKeys, vocab: int) -> DeviceScheme:
        with cls.lock:
            d = cls.devices.get(vocab)
            if d is None:
                d = cls.devices[vocab] = DeviceScheme(keys.config, vocab)
            return d

    @classmethod
    def memory(cls, rid: str) -> SeenContexts:
        with cls.lock:
            m = cls.memories.get(rid)
            if m is None:
                m = cls.memories[rid] = SeenContexts()
                if len(cls.memories) > cls.max_memories:
                    cls.memories.popitem(last=False)
            else:
                cls.memories.move_to_end(rid)
            return m


class TracemarkSGLangProcessor(CustomLogitProcessor):
    """The watermark as an SGLang custom logit processor (see the module doc)."""

    unwatermarked_rows = 0

    def __call__(self, logits: torch.Tensor, custom_param_list: Optional[List[Optional[Dict[str, Any]]]] = None) -> torch.Tensor:
        keys = _State.server_keys()
        params = custom_param_list or []
        if len(params) != logits.shape[0]:
            raise ValueError(
                f"{logits.shape[0]} logits rows for {len(params)} requests: tracemark does not follow "
                "speculative decoding (serve without --speculative-algorithm)"
            )
        vocab = int(logits.shape[-1])
        rows: List[int] = []
        schemes: List[Scheme] = []
        windows: List[List[int]] = []
        memories: List[SeenContexts] = []
        for i, p in enumerate(params):
            req = p.get("__req__") if isinstance(p, dict) else None
            if req is None or p is None:
                type(self).unwatermarked_rows += 1
                continue
            args = {k: v for k, v in p.items() if not k.startswith("__")}
            on, label = keys.label_for(args, strict=False)
            if not on:
                continue
            rows.append(i)
            schemes.append(keys.scheme_for(label, vocab))
            windows.append(window(req.origin_input_ids, req.output_ids, keys.width))
            if keys.skip_repeated:
                memories.append(_State.memory(str(req.rid)))
        if not rows:
            return logits
        d = _State.device(keys, vocab)
        seeds = d.row_seeds(schemes, windows, memories if keys.skip_repeated else None, logits.device)
        if len(rows) == logits.shape[0]:
            return d.apply(logits, seeds)
        index = torch.tensor(rows, device=logits.device)
        logits[index] = d.apply(logits[index], seeds)
        return logits
