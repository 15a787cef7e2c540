"""tracemark in llama.cpp through llama-cpp-python: a ``logits_processor``,
and its OpenAI-compatible server with the watermark installed server-side.

In a program::

    from llama_cpp import Llama
    from tracemark.llama_cpp import TracemarkLlamaProcessor

    llm = Llama(model_path="SmolLM2-135M-Instruct.Q4_1.gguf")
    scheme = tm.Scheme(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", llm.n_vocab())
    out = llm.create_completion(prompt, logits_processor=TracemarkLlamaProcessor.list(scheme))

A processor follows one generation (its repeated-context memory is that
generation's): make a new list per call, as ``list`` does.

The server (``serve`` / ``create_app``): llama-cpp-python's own FastAPI app,
with every model it loads wrapped so that each completion (chat, streaming
and ``logit_bias`` included) is watermarked under the account of the
request's API key. Keys stay on the server (``tracemark.serving``); API keys
are given as SHA-256 digests (``hash_api_key``), never stored in the clear::

    TRACEMARK_KEY_FILE=master.key TRACEMARK_SCHEME=kgw:gamma=0.25,delta=2,context=lefthash:1 \\
    TRACEMARK_SIGNING_KEY_FILE=receipts.key \\
    python -m tracemark.llama_cpp --model SmolLM2-135M-Instruct.Q4_1.gguf --accounts accounts.json

``accounts.json`` maps SHA-256 digests of API keys to account labels
(``{"<sha256 hex>": "account/alice"}``); an answer is watermarked under
``derive(master, label)``, so a leaked text names its account
(``tracemark detect --derive-labels account/alice,account/bob``).

Receipts: given a receipt signing key (``create_app(..., signer=...)``, or
``TRACEMARK_SIGNING_KEY_FILE`` for ``python -m tracemark.llama_cpp``), every
non-streaming completion and chat completion carries a signed provenance
receipt of its text in an extra member of the JSON body,
``tracemark_receipt`` (the receipt's JSON object: SPEC §12), stating the
model, the time, the scheme, the account's derived key id and the account
label. Streamed answers carry none (the client assembles their text).
Check one with ``tracemark receipt verify`` or ``tracemark.verify_receipt``.

llama.cpp calls the processor first in its sampler chain, on the raw logits.
``kgw`` works with any sampling settings; for ``tournament`` and ``gumbel``
(which decide the distribution themselves) sample with ``temperature=1.0,
top_k=0, top_p=1.0, min_p=0.0`` and no repeat penalty.
"""

from __future__ import annotations

import argparse
import contextvars
import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import numpy.typing as npt

from ._native import Scheme, SeenContexts, SigningKey, sign_receipt
from .serving import ServerKeys, signing_key_from_env
from .scoring import context_width

__all__ = ["TracemarkLlamaProcessor", "create_app", "hash_api_key", "main"]


class TracemarkLlamaProcessor:
    """A llama-cpp-python logits processor: ``(input_ids int32[n], scores
    float32[n_vocab]) -> scores``. llama.cpp hands a strided view of its
    candidate array and keeps what is returned: the row is copied once,
    watermarked by the core and returned.

    Args:
        scheme: the keyed scheme (its vocabulary must be the model's ``n_vocab()``).
        skip_repeated: skip contexts already watermarked in this generation;
            None follows the scheme's contract.
    """

    def __init__(self, scheme: Scheme, skip_repeated: Optional[bool] = None) -> None:
        self.scheme = scheme
        contract = scheme.contract
        skip = contract.skip_repeated if skip_repeated is None else bool(skip_repeated)
        self.memory = SeenContexts() if skip else None
        self.width = context_width(scheme.config)
        self.steps = 0

    @classmethod
    def list(cls, scheme: Scheme, skip_repeated: Optional[bool] = None) -> Any:
        """A fresh ``llama_cpp.LogitsProcessorList`` with one processor (one per generation)."""
        from llama_cpp import LogitsProcessorList

        return LogitsProcessorList([cls(scheme, skip_repeated)])

    def __call__(self, input_ids: npt.NDArray[np.intc], scores: npt.NDArray[np.single]) -> npt.NDArray[np.single]:
        row = np.array(scores, dtype=np.float32, copy=True, order="C")
        n = len(input_ids)
        window = input_ids[n - self.width :] if n >= self.width else input_ids
        self.scheme.process(np.asarray(window, dtype=np.int64), row, self.memory)
        self.steps += 1
        return row


def hash_api_key(api_key: str) -> str:
    """The SHA-256 hex digest under which an API key is listed in the accounts map."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


_ACCOUNT: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("tracemark_account", default=None)


RECEIPT_FIELD = "tracemark_receipt"


class _Receipts:
    """Receipts signed in the worker thread, waiting for the HTTP layer to
    attach them to their response (by completion id; bounded)."""

    def __init__(self, size: int = 1024) -> None:
        self._lock = threading.Lock()
        self._items: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()
        self._size = size

    def put(self, completion_id: str, receipt: Dict[str, Any]) -> None:
        with self._lock:
            self._items[completion_id] = receipt
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def pop(self, completion_id: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            return self._items.pop(completion_id, None)


# What the latest create_app serves (llama-cpp-python's server is one app per process).
_SERVER: Dict[str, Any] = {}


def _watermarking_llama(
    llm: Any, keys: ServerKeys, signer: Optional[SigningKey] = None, receipts: Optional[_Receipts] = None
) -> Any:
    """Wraps a loaded ``Llama`` so that every completion carries the watermark
    of the current request's account (chat handlers and streaming reach
    ``create_completion`` too), and, with a ``signer``, every non-streaming
    completion a signed receipt of its text (``tracemark_receipt``)."""
    original = llm.create_completion
    vocab = int(llm.n_vocab())

    def create_completion(*args: Any, **kwargs: Any) -> Any:
        scheme = keys.scheme_for(_ACCOUNT.get(), vocab)
        processors = TracemarkLlamaProcessor.list(scheme)
        if kwargs.get("logits_processor"):
            processors.extend(kwargs["logits_processor"])  # e.g. the server's min_tokens processor
        # llama-cpp-python 0.3.36 drops the whole processor list when logit_bias
        # is also given (list.extend returns None): fold the bias in here.
        bias = kwargs.pop("logit_bias", None)
        if bias:
            processors.append(_bias_processor({int(k): float(v) for k, v in bias.items()}))
        kwargs["logits_processor"] = processors
        result = original(*args, **kwargs)
        if signer is not None and isinstance(result, dict):
            choice = result["choices"][0]
            receipt = sign_receipt(
                signer,
                choice["text"],
                str(result.get("model") or "llama.cpp"),
                scheme=scheme.config,
                key_id=scheme.key_id,
                label=_ACCOUNT.get(),
            ).to_dict()
            result[RECEIPT_FIELD] = receipt  # for callers in the same process
            if receipts is not None:
                receipts.put(str(result["id"]), receipt)  # for the HTTP layer
        return result

    llm.create_completion = create_completion
    return llm


def _bias_processor(bias: Mapping[int, float]) -> Callable[[Any, Any], Any]:
    tokens = np.fromiter(bias.keys(), dtype=np.int64)
    values = np.fromiter(bias.values(), dtype=np.float32)

    def apply(input_ids: Any, scores: Any) -> Any:
        out = np.array(scores, dtype=np.float32, copy=True)
        out[tokens] += values
        return out

    return apply


def create_app(
    keys: ServerKeys,
    accounts: Mapping[str, str],
    server_settings: Any,
    model_settings: Any,
    *,
    signer: Optional[SigningKey] = None,
) -> Any:
    """llama-cpp-python's FastAPI app (``llama_cpp.server.app.create_app``)
    with the watermark installed in every model it loads, and API keys
    checked against ``accounts`` (SHA-256 digest of the key -> account
    label; a request without a listed key gets 401). With a receipt
    ``signer``, each non-streaming answer carries ``tracemark_receipt``. As
    llama-cpp-python's own ``create_app``: one app per process."""
    from fastapi import Depends, HTTPException, Request
    from starlette.responses import Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from llama_cpp.server import app as server_app
    from llama_cpp.server.model import LlamaProxy

    digests: Dict[str, str] = {}
    for digest, label in accounts.items():
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("accounts map SHA-256 hex digests of API keys (tracemark.llama_cpp.hash_api_key) to labels")
        keys.label_for({"tracemark_label": label})  # a bad label fails here, at start-up
        digests[digest] = label

    receipts = _Receipts()
    _SERVER.update(keys=keys, signer=signer, receipts=receipts)
    load = LlamaProxy.load_llama_from_model_settings
    if not getattr(load, "_tracemark", False):

        def load_watermarked(settings: Any) -> Any:
            return _watermarking_llama(load(settings), _SERVER["keys"], _SERVER["signer"], _SERVER["receipts"])

        load_watermarked._tracemark = True  # type: ignore[attr-defined]
        LlamaProxy.load_llama_from_model_settings = staticmethod(load_watermarked)  # type: ignore[method-assign]

    app = server_app.create_app(server_settings=server_settings, model_settings=model_settings)
    bearer = HTTPBearer(auto_error=False)

    async def authenticate(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> str:
        label = None
        if credentials is not None:
            given = hash_api_key(credentials.credentials)
            for digest, candidate in digests.items():
                if hmac.compare_digest(digest, given):
                    label = candidate
        if label is None:
            raise HTTPException(status_code=401, detail="Invalid API key")
        _ACCOUNT.set(label)  # an async dependency: the endpoint's worker thread inherits it
        return label

    app.dependency_overrides[server_app.authenticate] = authenticate
    if signer is not None:

        async def attach_receipts(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            media = response.headers.get("content-type", "").split(";")[0]
            if request.url.path not in _RECEIPT_PATHS or media != "application/json" or response.status_code != 200:
                return response
            body = b"".join([chunk async for chunk in response.body_iterator])
            headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
            try:
                data = json.loads(body)
                completion_id = str(data["id"])
            except (ValueError, KeyError, TypeError):
                return Response(body, status_code=response.status_code, headers=headers, media_type=media)
            # A chat completion's id is "chat" + its text completion's id.
            receipt = receipts.pop(completion_id[4:] if completion_id.startswith("chatcmpl-") else completion_id)
            if receipt is not None:
                data[RECEIPT_FIELD] = receipt
                body = json.dumps(data).encode("utf-8")
            return Response(body, status_code=response.status_code, headers=headers, media_type=media)

        app.middleware("http")(attach_receipts)
    return app


_RECEIPT_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/engines/copilot-codex/completions")


def main(argv: Optional[list] = None) -> None:
    """``python -m tracemark.llama_cpp``: the watermarked server."""
    import uvicorn
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    p = argparse.ArgumentParser(description="llama-cpp-python's OpenAI-compatible server, watermarked by tracemark")
    p.add_argument("--model", required=True, help="GGUF model file")
    p.add_argument("--accounts", required=True, help="JSON file: SHA-256 of each API key -> account label")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--n-ctx", type=int, default=2048)
    a = p.parse_args(argv)
    with open(a.accounts, encoding="utf-8") as f:
        accounts = json.load(f)
    keys = ServerKeys.from_env()
    app = create_app(
        keys,
        accounts,
        ServerSettings(host=a.host, port=a.port),
        [ModelSettings(model=a.model, n_ctx=a.n_ctx, verbose=False)],
        signer=signing_key_from_env(),
    )
    uvicorn.run(app, host=a.host, port=a.port)


if __name__ == "__main__":
    main()
