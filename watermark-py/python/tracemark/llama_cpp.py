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

``accounts.json`` is one JSON object mapping the SHA-256 hex digest of each
API key (``hash_api_key``: 64 lowercase hex digits) to its account label,
``{"<sha256 hex>": "account/alice"}``. Every label has the form
``account/<id>``, ``<id>`` being 1-120 printable ASCII characters without
space or ``/``: the labels ``tracemark attribute`` tries by default
(``--label-format account/{}``; ``--accounts-file`` lists the ids, one a
line). Several API keys may share an account. A file that cannot be read,
is not a JSON object, lists no account, or holds another label is refused
at start-up, in one line naming the file and the entry. An answer is
watermarked under ``derive(master, label)``, so a leaked text names its
account (``tracemark attribute --key master.key --tokenizer tokenizer.json
--accounts-file ids.txt answer.txt``, or ``tracemark detect --derive-labels
account/alice,account/bob``).

llama.cpp's settings, spelled as in llama-cpp-python's server (``--n_threads``)
or with dashes (``--n-threads``), reach ``Llama`` as that server passes them
(``llama_cpp.server.settings.ModelSettings``): ``--n-ctx`` (2048),
``--n-threads`` and ``--n-threads-batch`` (-1: every core), ``--n-batch``,
``--n-gpu-layers`` (-1: all), ``--seed``, ``--chat-format`` (default: the
GGUF's own template) and ``--verbose`` (off unless given); left out, each
keeps that server's default.

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
import functools
import hashlib
import hmac
import json
import os
import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from ._native import Scheme, SeenContexts, SigningKey, sign_receipt
from .serving import ServerKeys, ServingConfigError, signing_key_from_env
from .scoring import context_width

__all__ = [
    "ACCOUNT_LABEL_FORMAT",
    "AccountsError",
    "TracemarkLlamaProcessor",
    "account_label_problem",
    "create_app",
    "hash_api_key",
    "load_accounts",
    "main",
    "model_settings",
]


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


ACCOUNT_LABEL_PREFIX = "account/"
ACCOUNT_LABEL_FORMAT = "account/<id>"
_ACCOUNT_ID_MAX = 120  # "account/" + 120 bytes = 128, the core's longest label
_FORMAT_RULE = (
    f"{ACCOUNT_LABEL_FORMAT}, <id> being 1-{_ACCOUNT_ID_MAX} printable ASCII characters without space or '/'"
    " (what tracemark attribute's default --label-format account/{} finds)"
)
_ACCOUNTS_SHAPE = '{"<sha256 hex of an API key>": "account/<id>", ...}'


class AccountsError(ValueError):
    """The accounts map (or its file) is unusable; the message names the entry and how to fix it."""


def _show(value: object, limit: int = 72) -> str:
    """A value on one line, quoted and escaped as JSON, shortened when long."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def account_label_problem(label: object) -> Optional[str]:
    """What is wrong with an account label, or None when it has the one
    accepted form ``account/<id>`` (``<id>``: 1-120 printable ASCII
    characters, no space or ``/``)."""
    if not isinstance(label, str):
        return f"is {_json_kind(label)}, not a string of the form {_FORMAT_RULE}"
    if not label.startswith(ACCOUNT_LABEL_PREFIX):
        bare = all(0x21 <= ord(c) <= 0x7E and c != "/" for c in label) and 0 < len(label) <= _ACCOUNT_ID_MAX
        hint = f"; write {_show(ACCOUNT_LABEL_PREFIX + label)}" if bare else ""
        return f"is not of the form {_FORMAT_RULE}{hint}"
    account_id = label[len(ACCOUNT_LABEL_PREFIX) :]
    if not account_id:
        return f"has an empty <id>: the form is {_FORMAT_RULE}"
    if len(account_id) > _ACCOUNT_ID_MAX:
        return f"has an <id> of {len(account_id)} characters: the form is {_FORMAT_RULE}"
    bad = next((c for c in account_id if not (0x21 <= ord(c) <= 0x7E) or c == "/"), None)
    if bad is not None:
        return f"has {_show(bad)} in its <id>: the form is {_FORMAT_RULE}"
    return None


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, (int, float)):
        return "a JSON number"
    if value is None:
        return "JSON null"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, dict):
        return "a JSON object"
    return type(value).__name__


def _check_accounts(accounts: object, where: str) -> Dict[str, str]:
    """The accounts map, checked entry by entry (``AccountsError`` names the
    first bad one, prefixed by ``where``)."""
    if not isinstance(accounts, Mapping):
        raise AccountsError(
            f"{where}: {_json_kind(accounts)}, not an object; it must map API key digests to labels: {_ACCOUNTS_SHAPE}"
        )
    if not accounts:
        raise AccountsError(f"{where}: lists no account, so every request would get 401; give {_ACCOUNTS_SHAPE}")
    checked: Dict[str, str] = {}
    for digest, label in accounts.items():
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise AccountsError(
                f"{where}: {_show(digest)} is not the SHA-256 hex digest of an API key (64 lowercase hex digits:"
                " python -c 'from tracemark.llama_cpp import hash_api_key; print(hash_api_key(\"<API key>\"))')"
            )
        problem = account_label_problem(label)
        if problem is not None:
            raise AccountsError(f"{where}: the label {_show(label)} (of {digest[:12]}...) {problem}")
        checked[digest] = label
    return checked


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise AccountsError(f"{_show(k)} is listed twice; list each API key digest once")
        seen[k] = v
    return seen


def load_accounts(path: "os.PathLike[str] | str") -> Dict[str, str]:
    """Reads an accounts file (a JSON object: SHA-256 hex digest of each API
    key -> ``account/<id>``). Raises ``AccountsError`` with a one-line
    message naming the file and what is wrong in it."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise AccountsError(f"{name}: no such file; give a JSON file {_ACCOUNTS_SHAPE}") from None
    except IsADirectoryError:
        raise AccountsError(f"{name}: is a directory, not a JSON file {_ACCOUNTS_SHAPE}") from None
    except OSError as e:
        raise AccountsError(f"{name}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise AccountsError(f"{name}: not UTF-8 text (byte {e.start}); it must be a JSON file {_ACCOUNTS_SHAPE}") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except AccountsError as e:
        raise AccountsError(f"{name}: {e}") from None
    except json.JSONDecodeError as e:
        raise AccountsError(
            f"{name}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); it must be {_ACCOUNTS_SHAPE}"
        ) from None
    return _check_accounts(data, name)


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
    label ``account/<id>``; anything else is an ``AccountsError``; a request
    without a listed key gets 401). With a receipt
    ``signer``, each non-streaming answer carries ``tracemark_receipt``. As
    llama-cpp-python's own ``create_app``: one app per process."""
    from fastapi import Depends, HTTPException, Request
    from starlette.responses import Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from llama_cpp.server import app as server_app
    from llama_cpp.server.model import LlamaProxy

    digests = _check_accounts(accounts, "accounts")
    for label in digests.values():
        keys.label_for({"tracemark_label": label})  # the core's label rule, at start-up

    receipts = _Receipts()
    _SERVER.update(keys=keys, signer=signer, receipts=receipts)
    load = LlamaProxy.load_llama_from_model_settings
    if not getattr(load, "_tracemark", False):

        @functools.wraps(load)
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


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "on", "t", "true", "y", "yes"):
        return True
    if value in ("0", "off", "f", "false", "n", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


# llama.cpp's settings offered here: (ModelSettings field, type, help).
_KNOBS: Sequence[Tuple[str, Callable[[str], Any], str]] = (
    ("n_ctx", int, "context size in tokens (default: 2048)"),
    ("n_threads", int, "threads for generation; -1: every core (default: half the cores)"),
    ("n_threads_batch", int, "threads for prompt processing; -1: every core (default: every core)"),
    ("n_batch", int, "prompt tokens evaluated per batch (default: 512)"),
    ("n_gpu_layers", int, "layers offloaded to the GPU; -1: all (default: 0)"),
    ("seed", int, "llama.cpp's random seed (default: llama.cpp's, random)"),
    ("chat_format", str, "chat format, e.g. chatml or llama-3 (default: the GGUF's own chat template)"),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tracemark.llama_cpp",
        description="llama-cpp-python's OpenAI-compatible server, watermarked by tracemark "
        "(TRACEMARK_KEY_FILE, TRACEMARK_SCHEME; optional TRACEMARK_SIGNING_KEY_FILE)",
    )
    p.add_argument("--model", required=True, help="GGUF model file")
    p.add_argument(
        "--accounts",
        required=True,
        help=f"JSON file mapping the SHA-256 hex digest of each API key to its label {ACCOUNT_LABEL_FORMAT}: {_ACCOUNTS_SHAPE}",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    for field, kind, text in _KNOBS:
        # Both spellings: ours (--n-threads) and llama-cpp-python's server's (--n_threads).
        spellings = dict.fromkeys([f"--{field.replace('_', '-')}", f"--{field}"])
        p.add_argument(*spellings, dest=field, type=kind, default=None, help=text)
    p.add_argument(
        "--verbose", nargs="?", const=True, default=False, type=_bool, metavar="BOOL",
        help="llama.cpp's own logging (default: off)",
    )
    return p


def _flags_only(settings_class: Any) -> Any:
    """``settings_class`` (one of llama-cpp-python's pydantic-settings
    classes) reading only the values it is given: theirs also read
    unprefixed environment variables (``MODEL``, ``N_CTX``, ``CACHE``,
    ``HOST`` ...), so a variable of that name set for something else would
    change the server or fail its validation. The server's settings are its
    flags alone."""

    class FlagsOnly(settings_class):  # type: ignore[misc, valid-type]
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, **_sources):  # noqa: ANN001
            return (init_settings,)

    FlagsOnly.__name__ = FlagsOnly.__qualname__ = settings_class.__name__
    return FlagsOnly


def model_settings(args: argparse.Namespace) -> Any:
    """The ``llama_cpp.server.settings.ModelSettings`` of parsed arguments:
    the model, and each llama.cpp setting given (those left out keep
    llama-cpp-python's server's defaults). llama-cpp-python's server hands
    them to ``Llama`` (``LlamaProxy.load_llama_from_model_settings``).
    Environment variables play no part (``_flags_only``). Raises
    ``ValueError`` naming the option on an out-of-range value."""
    from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerRegistry
    from llama_cpp.server.settings import ModelSettings
    from pydantic import ValidationError

    given: Dict[str, Any] = {"model": args.model, "n_ctx": 2048, "verbose": bool(args.verbose)}
    for field, _, _ in _KNOBS:
        value = getattr(args, field, None)
        if value is not None:
            given[field] = value
    formats = sorted(LlamaChatCompletionHandlerRegistry()._chat_handlers)
    chat_format = given.get("chat_format")
    if chat_format is not None and chat_format not in formats and not chat_format.startswith("chat_template."):
        raise ValueError(
            f"--chat-format {chat_format!r} is not one of llama-cpp-python's chat formats: {', '.join(formats)}"
        )
    try:
        return _flags_only(ModelSettings)(**given)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"--{field.replace('_', '-')} {given.get(field)!r}: {err['msg']}")
        raise ValueError("; ".join(problems)) from None


def main(argv: Optional[List[str]] = None) -> None:
    """``python -m tracemark.llama_cpp``: the watermarked server. Every
    setting is checked before the model is loaded; a bad one ends the
    program with status 2 and a one-line message."""
    p = _parser()
    a = p.parse_args(argv)

    def fail(message: str) -> NoReturn:
        p.exit(2, f"{p.prog}: error: {message}\n")

    try:
        settings = model_settings(a)
    except ValueError as e:
        fail(str(e))
    try:
        accounts = load_accounts(a.accounts)
    except AccountsError as e:
        fail(f"--accounts {e}")
    if not os.path.isfile(a.model):
        fail(f"--model {a.model}: no such file (a GGUF model file)")
    try:
        keys = ServerKeys.from_env()
        signer = signing_key_from_env()
    except ServingConfigError as e:
        fail(str(e))

    import uvicorn
    from llama_cpp.server.settings import ServerSettings

    app = create_app(keys, accounts, _flags_only(ServerSettings)(host=a.host, port=a.port), [settings], signer=signer)
    uvicorn.run(app, host=a.host, port=a.port)


if __name__ == "__main__":
    main()
