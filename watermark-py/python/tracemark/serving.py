"""What the serving integrations share (``tracemark.vllm``, ``tracemark.sglang``,
``tracemark.llama_cpp``): keys that live on the server, per-request labels,
and the few ids of history a seed reads.

The server holds one master key and one scheme configuration, named in its
configuration or environment:

- ``TRACEMARK_KEY_FILE``: the master key file (``tracemark keygen``);
- ``TRACEMARK_SCHEME``: the scheme string, e.g.
  ``kgw:gamma=0.25,delta=2,context=lefthash:1``;
- ``TRACEMARK_UNLABELLED`` (optional): what a request without a label gets:
  ``master`` (the default: the master key itself), ``off`` (not
  watermarked), or a label (e.g. ``cohort/unlabelled``);
- ``TRACEMARK_SIGNING_KEY_FILE`` (optional): a receipt signing key
  (``tracemark receipt keygen``; not a watermark key). Where an integration
  supports it, each answer then carries a signed provenance receipt.

A request never carries key material. It may carry, as flat request
arguments (vLLM's ``vllm_xargs`` / ``SamplingParams.extra_args``, SGLang's
``custom_params``):

- ``tracemark_label``: an account or cohort label; the server watermarks the
  answer under ``derive(master, label)`` (derived keys are cached, nothing is
  stored per account);
- ``tracemark``: ``"off"`` to opt out (``"on"`` is the default).

Offline callers may also nest them: ``{"tracemark": {"label": ..., "enabled": False}}``.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Mapping, Optional, Sequence, Union

from ._native import Key, Scheme, SchemeConfig, SigningKey
from .scoring import context_width

__all__ = [
    "ARG_LABEL",
    "ARG_SWITCH",
    "ENV_KEY_FILE",
    "ENV_SCHEME",
    "ENV_SIGNING_KEY_FILE",
    "ENV_UNLABELLED",
    "ServerKeys",
    "ServingConfigError",
    "signing_key_from_env",
    "RequestArgsError",
    "validate_request_args",
    "window",
]

log = logging.getLogger("tracemark.serving")

ENV_KEY_FILE = "TRACEMARK_KEY_FILE"
ENV_SCHEME = "TRACEMARK_SCHEME"
ENV_UNLABELLED = "TRACEMARK_UNLABELLED"
ENV_SIGNING_KEY_FILE = "TRACEMARK_SIGNING_KEY_FILE"
ARG_LABEL = "tracemark_label"
ARG_SWITCH = "tracemark"


class ServingConfigError(ValueError):
    """The server's tracemark configuration is missing or wrong (raised at start-up)."""


class RequestArgsError(ValueError):
    """A request's tracemark arguments are malformed (a 400 for the client)."""


_label_checker: Optional[Key] = None


def _check_label(label: object) -> str:
    """The label, if ``Key.derive`` accepts it (printable ASCII, no spaces, 1–128 bytes)."""
    global _label_checker
    if not isinstance(label, str):
        raise RequestArgsError(f"{ARG_LABEL} must be a string, not {type(label).__name__}")
    if _label_checker is None:
        _label_checker = Key.generate()  # a throwaway key: only its label check is used
    try:
        _label_checker.derive(label)
    except ValueError as e:
        raise RequestArgsError(f"invalid {ARG_LABEL}: {e}") from None
    return label


def parse_request_args(args: Optional[Mapping[str, Any]]) -> tuple:
    """``(enabled, label)`` from a request's arguments (flat or nested); raises
    ``RequestArgsError`` on malformed ones. ``enabled`` is None when unspecified."""
    if not args:
        return None, None
    enabled: Optional[bool] = None
    label: Optional[str] = None
    switch = args.get(ARG_SWITCH)
    if isinstance(switch, Mapping):
        nested = switch
        if "enabled" in nested:
            if not isinstance(nested["enabled"], bool):
                raise RequestArgsError("tracemark.enabled must be true or false")
            enabled = nested["enabled"]
        if nested.get("label") is not None:
            label = _check_label(nested["label"])
        unknown = set(nested) - {"enabled", "label"}
        if unknown:
            raise RequestArgsError(f"unknown tracemark arguments: {sorted(unknown)} (known: enabled, label)")
    elif switch is not None:
        if switch in ("off", False):
            enabled = False
        elif switch in ("on", True):
            enabled = True
        else:
            raise RequestArgsError(f'{ARG_SWITCH} must be "on" or "off", not {switch!r}')
    if args.get(ARG_LABEL) is not None:
        label = _check_label(args[ARG_LABEL])
    return enabled, label


def validate_request_args(args: Optional[Mapping[str, Any]]) -> None:
    """Checks a request's tracemark arguments without any key (for a
    frontend's admission check); raises ``RequestArgsError``."""
    parse_request_args(args)


class ServerKeys:
    """The server side of the watermark: the master key, the scheme
    configuration, and the keyed schemes of the labels seen (an LRU cache).

    Args:
        master: the master key.
        scheme: the scheme configuration (or string).
        unlabelled: ``"master"``, ``"off"`` or a label (see the module doc).
        cache_size: derived schemes kept per vocabulary size.
    """

    def __init__(
        self,
        master: Key,
        scheme: Union[str, SchemeConfig],
        unlabelled: str = "master",
        cache_size: int = 4096,
    ) -> None:
        self.master = master
        self.config = scheme if isinstance(scheme, SchemeConfig) else SchemeConfig(scheme)
        if unlabelled not in ("master", "off"):
            try:
                _check_label(unlabelled)
            except RequestArgsError as e:
                raise ServingConfigError(f"{ENV_UNLABELLED}: {e}") from None
        self.unlabelled = unlabelled
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[tuple, Scheme]" = OrderedDict()
        self.width = context_width(self.config)
        self.skip_repeated = bool(self.config.contract.skip_repeated)

    @classmethod
    def from_env(
        cls, env: Optional[Mapping[str, str]] = None, overrides: Optional[Mapping[str, Any]] = None
    ) -> "ServerKeys":
        """From the environment (``TRACEMARK_KEY_FILE``, ``TRACEMARK_SCHEME``,
        ``TRACEMARK_UNLABELLED``), each overridden by ``overrides``
        (``key_file``, ``scheme``, ``unlabelled``: e.g. vLLM's
        ``--additional-config '{"tracemark": {...}}'``)."""
        env = os.environ if env is None else env
        o = dict(overrides or {})
        unknown = set(o) - {"key_file", "scheme", "unlabelled"}
        if unknown:
            raise ServingConfigError(f"unknown tracemark settings {sorted(unknown)} (known: key_file, scheme, unlabelled)")
        key_file = o.get("key_file") or env.get(ENV_KEY_FILE)
        scheme = o.get("scheme") or env.get(ENV_SCHEME)
        if not key_file:
            raise ServingConfigError(f"no watermark key: set {ENV_KEY_FILE} to the server's key file (tracemark keygen)")
        if not scheme:
            raise ServingConfigError(
                f"no scheme: set {ENV_SCHEME}, e.g. kgw:gamma=0.25,delta=2,context=lefthash:1"
            )
        try:
            master = Key.load(key_file)
        except (OSError, ValueError) as e:
            raise ServingConfigError(f"cannot load the key file named by {ENV_KEY_FILE}: {e}") from None
        try:
            config = SchemeConfig(scheme)
        except ValueError as e:
            raise ServingConfigError(f"{ENV_SCHEME}: {e}") from None
        return cls(master, config, o.get("unlabelled") or env.get(ENV_UNLABELLED) or "master")

    def scheme_for(self, label: Optional[str], vocab_size: int) -> Scheme:
        """The keyed scheme of a label (``None``: the master key), cached."""
        k = (label, int(vocab_size))
        s = self._cache.get(k)
        if s is not None:
            self._cache.move_to_end(k)
            return s
        key = self.master if label is None else self.master.derive(label)
        s = self.config.build(key, int(vocab_size))
        self._cache[k] = s
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return s

    def label_for(self, args: Optional[Mapping[str, Any]], strict: bool = True) -> tuple:
        """``(watermarked, label)`` of a request: whether it is watermarked and
        under which label (None: the master key). Malformed arguments raise
        ``RequestArgsError``; with ``strict=False`` (where a request is
        already admitted and raising would fail a whole batch) they count as
        no arguments: a malformed label never opts an answer out."""
        try:
            enabled, label = parse_request_args(args)
        except RequestArgsError as e:
            if strict:
                raise
            log.warning("tracemark: %s; the request is treated as unlabelled", e)
            enabled, label = None, None
        if enabled is False:
            return False, None
        if label is not None:
            return True, label
        if self.unlabelled == "off":
            return bool(enabled), None
        return True, (None if self.unlabelled == "master" else self.unlabelled)

    def request_scheme(self, args: Optional[Mapping[str, Any]], vocab_size: int) -> Optional[Scheme]:
        """The scheme a request is watermarked with, or None (opted out)."""
        on, label = self.label_for(args)
        return self.scheme_for(label, vocab_size) if on else None


def signing_key_from_env(env: Optional[Mapping[str, str]] = None) -> Optional[SigningKey]:
    """The receipt signing key named by ``TRACEMARK_SIGNING_KEY_FILE``, or None
    when it is not set. A file that is not a signing key (a watermark key, a
    public key) is a ``ServingConfigError`` at start-up."""
    env = os.environ if env is None else env
    path = env.get(ENV_SIGNING_KEY_FILE)
    if not path:
        return None
    try:
        return SigningKey.load(path)
    except (OSError, ValueError) as e:
        raise ServingConfigError(f"cannot load the signing key named by {ENV_SIGNING_KEY_FILE}: {e}") from None


def window(prompt: Optional[Sequence[int]], output: Sequence[int], width: int) -> list:
    """The last ``width`` ids of ``prompt + output`` (all of them when
    shorter), without joining the whole history."""
    if width == 0:
        return []
    n = len(output)
    if n >= width:
        return list(output[n - width :])
    head = list(prompt or [])
    need = width - n
    return head[max(len(head) - need, 0) :] + list(output)
