"""Keyed values where the logits live: the per-token mix (SPEC §6) and each
scheme's step (kgw §7, tournament §8, gumbel §9) in torch, on whatever device
the logits are on.

The Rust core computes what each row's position contributes (its context key,
the anchor's rank, the rank seed: a few bytes per row, from the last few ids of
its history); those bytes cross to the device, never a logits row.

>>> import tracemark as tm
>>> from tracemark.device import DeviceScheme
>>> scheme = tm.Scheme(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", 49152)  # doctest: +SKIP
>>> device = DeviceScheme(scheme.config, scheme.vocab_size)  # doctest: +SKIP
>>> rows = device.row_seeds([scheme] * len(histories), histories)  # doctest: +SKIP
>>> logits = device.apply(logits, rows)  # doctest: +SKIP

What is exact, and where:

- the mix, kgw's 16-bit values and green lists, the tournament's g-values,
  gumbel's uniforms and noise, and therefore every kgw row and every gumbel
  selection, are bit-identical to the core's on any device: 32-bit products
  are formed from 16-bit halves in int64 (no overflow), and the logarithm is
  the core's own, from IEEE-754 basic operations (add, multiply, divide are
  correctly rounded on CPUs and CUDA alike);
- the tournament's output distribution is a floating-point computation
  (softmax, layer weights, log) whose sums may be ordered differently on a
  device: its candidates and g-values are exact, and the distribution is the
  core's to within 1e-12 in total variation (at most 4e-16 over 1,800 random
  rows on CPU), log-probabilities within the golden vectors' tolerance (2e-6
  relative) wherever the probability is at least 1e-9.

Rows must hold finite logits or ``-inf`` (banned tokens), as every sampler
assumes; NaN is not checked here (that would cost a device synchronisation).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ._native import Scheme, SchemeConfig, SeenContexts

__all__ = ["DeviceScheme", "RowSeeds", "mix", "ln"]

_MASK32 = 0xFFFFFFFF
_MIX_MUL = 0x735A2D97


def _f64(bits: int) -> float:
    return struct.unpack("<d", bits.to_bytes(8, "little"))[0]


_LN2_HI = _f64(0x3FE62E42FEE00000)
_LN2_LO = _f64(0x3DEA39EF35793C76)
_SQRT_2 = math.sqrt(2.0)  # correctly rounded, as Rust's SQRT_2
_TWO_POW_M32 = 1.0 / 4294967296.0


def _mul32(x: torch.Tensor, b: Union[torch.Tensor, int]) -> torch.Tensor:
    """``x * b mod 2^32`` for int64 tensors holding 32-bit words, without int64 overflow."""
    lo = x & 0xFFFF
    hi = x >> 16
    return (lo * b + (((hi * b) & 0xFFFF) << 16)) & _MASK32


def mix(seeds: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """SPEC §6: ``mix(seed, w)`` for int64 ``seeds`` (the u64 seeds' bits,
    shape ``(...)``) and int64 ``words`` in ``[0, 2^32)`` (broadcastable);
    int64 values in ``[0, 2^32)``."""
    a = seeds & _MASK32
    b = ((seeds >> 32) & _MASK32) | 1
    x = words ^ a
    x = x ^ (x >> 16)
    x = _mul32(x, b)
    x = x ^ (x >> 15)
    x = _mul32(x, _MIX_MUL)
    return x ^ (x >> 15)


def ln(x: torch.Tensor) -> torch.Tensor:
    """The core's deterministic natural logarithm (SPEC §9), float64, for
    positive normal finite inputs: the same basic operations in the same
    order, so bit-identical results on every device."""
    bits = x.view(torch.int64)
    k = ((bits >> 52) & 0x7FF) - 1023
    m = ((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000).view(torch.float64)
    big = m > _SQRT_2
    m = torch.where(big, m * 0.5, m)
    kf = (k + big.to(torch.int64)).to(torch.float64)
    f = m - 1.0
    s = f / (m + 1.0)
    z = s * s
    p = torch.full_like(z, 1.0 / 21.0)
    for d in (19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0):
        p = p * z + 1.0 / d
    r = s * z * p
    two_s = f - s * f
    return kf * _LN2_HI + ((two_s + 2.0 * r) + kf * _LN2_LO)


@dataclass(frozen=True)
class RowSeeds:
    """What each row of a batch contributes to the keyed values, on the
    device: int64 tensors of shape ``(batch,)``.

    ``context_keys`` are the u64 context keys' bits; ``anchor_ranks`` (self-hash)
    the context anchor's rank (``2^32 - 1`` otherwise); ``rank_seeds`` the
    row's key's rank seed; ``tables`` the row of its key's self-value table in
    ``self_values`` (self-hash only); ``watermark`` whether the row is
    watermarked (its context is long enough and not a repeat);
    ``any_watermarked`` the same for the batch, known on the host.
    """

    context_keys: torch.Tensor
    anchor_ranks: torch.Tensor
    rank_seeds: torch.Tensor
    tables: torch.Tensor
    watermark: torch.Tensor
    self_values: Optional[torch.Tensor]
    any_watermarked: bool


def _window(history: Sequence[int], width: int) -> Sequence[int]:
    """The last ``width`` ids (all of a shorter history): all a seed reads."""
    return history[len(history) - width :] if len(history) >= width else history


# Self-hash keeps one value table per key on the device (4 bytes a token);
# past this many keys the tables are dropped and rebuilt as rows need them.
MAX_SELF_TABLES = 64


class DeviceScheme:
    """One scheme configuration's step in torch, for rows under any keys of
    that configuration (each row brings its key's seeds: cohort and account
    keys share one ``DeviceScheme``).

    Args:
        config: the scheme configuration (a ``SchemeConfig`` or scheme string).
        vocab_size: the width of the logits rows.
        device: where the keyed tables live (self-hash); default: where the
            first logits are.
    """

    def __init__(self, config: Union[str, SchemeConfig], vocab_size: int, device: Optional[torch.device] = None):
        self.config = config if isinstance(config, SchemeConfig) else SchemeConfig(config)
        self.vocab_size = int(vocab_size)
        self._device = device
        self._params: Optional[Dict[str, Any]] = None
        self._tables: Dict[str, int] = {}  # key id -> row in self_values
        self._table_list: List[torch.Tensor] = []
        self._self_values: Optional[torch.Tensor] = None
        self._rank_seeds: Dict[str, int] = {}

    def _check(self, scheme: Scheme) -> Dict[str, Any]:
        if scheme.config != self.config or scheme.vocab_size != self.vocab_size:
            raise ValueError(
                f"this DeviceScheme is for {self.config} over {self.vocab_size} tokens, "
                f"not {scheme.config} over {scheme.vocab_size}"
            )
        if self._params is None:
            self._params = dict(scheme.device_params())
        return self._params

    @property
    def params(self) -> Dict[str, Any]:
        """The configuration's parameters (known after the first ``row_seeds``)."""
        if self._params is None:
            raise RuntimeError("call row_seeds first")
        return self._params

    def _rank_seed(self, scheme: Scheme) -> int:
        """The rank seed of the scheme's key (cached per key; a keyed value, not the key)."""
        seed = self._rank_seeds.get(scheme.key_id)
        if seed is None:
            if len(self._rank_seeds) >= 4096:
                self._rank_seeds.clear()
            seed = int(scheme.device_params()["rank_seed"])
            self._rank_seeds[scheme.key_id] = seed
        return seed

    def _table_row(self, scheme: Scheme, device: torch.device) -> int:
        row = self._tables.get(scheme.key_id)
        if row is None:
            values = scheme.self_values()
            assert values is not None
            row = len(self._table_list)
            self._table_list.append(torch.from_numpy(values.astype(np.int64)).to(device))
            self._tables[scheme.key_id] = row
            self._self_values = torch.stack(self._table_list)
        return row

    def row_seeds(
        self,
        schemes: Sequence[Scheme],
        histories: Sequence[Sequence[int]],
        memories: Optional[Sequence[SeenContexts]] = None,
        device: Optional[torch.device] = None,
    ) -> RowSeeds:
        """The seeds of a batch: row ``i`` follows ``histories[i]`` under
        ``schemes[i]`` (one ``Scheme`` of this configuration per row; rows may
        have different keys), with ``memories[i]`` if given. Only the last
        context-width ids of each history are read; one small host-to-device
        copy carries everything."""
        n = len(histories)
        if len(schemes) != n or (memories is not None and len(memories) != n):
            raise ValueError(f"{len(schemes)} schemes and {n} histories: give one scheme per row")
        device = torch.device(device or self._device or "cpu")
        packed = np.zeros((5, n), dtype=np.int64)
        groups: Dict[int, List[int]] = {}
        by_id: Dict[int, Scheme] = {}
        for i, s in enumerate(schemes):
            groups.setdefault(id(s), []).append(i)
            by_id[id(s)] = s
        # Self-hash values a candidate under its own anchor: each key brings its rank seed and table.
        self_hash = self._check(schemes[0]).get("context_mode") == "selfhash" if n else False
        if self_hash:
            new_keys = {s.key_id for s in by_id.values()} - set(self._tables)
            if len(self._tables) + len(new_keys) > MAX_SELF_TABLES:
                # A soft cap: one batch may hold more keys than this.
                self._tables.clear()
                self._table_list.clear()
        for sid, rows in groups.items():
            scheme = by_id[sid]
            params = self._check(scheme)
            width = int(params["context_width"])
            windows = [_window(histories[i], width) for i in rows]
            mems = None if memories is None else [memories[i] for i in rows]
            keys, ranks, on = scheme.row_seeds(windows, mems)
            idx = np.asarray(rows)
            packed[0, idx] = keys.view(np.int64)
            packed[1, idx] = ranks.astype(np.int64)
            packed[4, idx] = on
            if self_hash:
                packed[2, idx] = np.array(self._rank_seed(scheme), dtype=np.uint64).view(np.int64)
                packed[3, idx] = self._table_row(scheme, device)
        t = torch.from_numpy(packed).to(device, non_blocking=True)
        return RowSeeds(
            context_keys=t[0],
            anchor_ranks=t[1],
            rank_seeds=t[2],
            tables=t[3],
            watermark=t[4].bool(),
            self_values=self._self_values,
            any_watermarked=bool(packed[4].any()),
        )

    def _values(self, rows: RowSeeds, tokens: torch.Tensor, sixteen: bool) -> torch.Tensor:
        """Keyed values of ``tokens`` (int64, shape ``(batch, m)`` or ``(m,)``
        shared by all rows) under each row's seeds: 16-bit (kgw) or 32-bit."""
        keys = rows.context_keys[:, None]
        if sixteen:
            words = mix(keys, tokens >> 1)
            values = (words >> (16 * (tokens & 1))) & 0xFFFF
        else:
            values = mix(keys, tokens)
        if self.params["context_mode"] == "selfhash":
            assert rows.self_values is not None
            ranks = mix(rows.rank_seeds[:, None], tokens)
            own = ranks < rows.anchor_ranks[:, None]
            tok = tokens if tokens.dim() == 2 else tokens.expand_as(values)
            table = rows.self_values[rows.tables[:, None], tok]
            values = torch.where(own, table, values)
        return values

    def green(self, rows: RowSeeds) -> torch.Tensor:
        """kgw: the green list of each row (bool, ``(batch, vocab)``)."""
        p = self.params
        if p["kind"] != "kgw":
            raise ValueError(f"{self.config} has no green list")
        device = rows.context_keys.device
        vocab = self.vocab_size
        if p["context_mode"] == "selfhash":
            tokens = torch.arange(vocab, device=device, dtype=torch.int64)
            values = self._values(rows, tokens, sixteen=True)
        else:
            # Tokens 2j and 2j+1 share mix(seed, j): one mix per pair.
            words = mix(rows.context_keys[:, None], torch.arange((vocab + 1) // 2, device=device, dtype=torch.int64))
            values = torch.stack((words & 0xFFFF, words >> 16), dim=-1).reshape(len(words), -1)[:, :vocab]
        return values < int(p["green_threshold"])

    def apply(self, logits: torch.Tensor, rows: RowSeeds) -> torch.Tensor:
        """Watermarks the rows of ``logits`` (``(batch, vocab)``, any float
        dtype, any device) that ``rows`` marks; returns the result (a new
        tensor; rows not watermarked are unchanged bit for bit)."""
        if logits.dim() != 2 or logits.shape[-1] != self.vocab_size:
            raise ValueError(f"logits must be (batch, {self.vocab_size}), got {tuple(logits.shape)}")
        if logits.shape[0] != rows.context_keys.shape[0]:
            raise ValueError(f"{logits.shape[0]} rows of logits and {rows.context_keys.shape[0]} rows of seeds")
        if not rows.any_watermarked:
            return logits
        kind = self.params["kind"]
        on = rows.watermark[:, None]
        if kind == "kgw":
            delta = float(self.params["delta"])
            green = self.green(rows) & on
            return torch.where(green, logits + delta, logits)
        if kind == "gumbel":
            out = self._gumbel(logits, rows)
        elif kind == "tournament":
            out = self._tournament(logits, rows)
        else:
            raise ValueError(f"{self.config} has no device path")
        return torch.where(on, out, logits)

    def _gumbel(self, logits: torch.Tensor, rows: RowSeeds) -> torch.Tensor:
        inv_t = 1.0 / float(self.params["temperature"])
        tokens = torch.arange(self.vocab_size, device=logits.device, dtype=torch.int64)
        values = self._values(rows, tokens, sixteen=False)
        u = (values.to(torch.float64) + 0.5) * _TWO_POW_M32
        noise = -ln(-ln(u))
        x = logits.to(torch.float64)
        score = x * inv_t + noise  # -inf stays -inf: banned tokens never win
        best = score.argmax(dim=-1, keepdim=True)  # the first maximum: ties to the lower id
        out = torch.full_like(logits, -math.inf)
        return out.scatter(1, best, logits.gather(1, best))

    def _tournament(self, logits: torch.Tensor, rows: RowSeeds) -> torch.Tensor:
        p_ = self.params
        inv_t = 1.0 / float(p_["temperature"])
        k = min(int(p_["top_k"]), self.vocab_size)
        n = int(p_["leaves"])
        # Candidates: the k largest finite logits, ties to the lower id (a stable sort keeps id order).
        vals, idx = torch.sort(logits, dim=-1, descending=True, stable=True)
        cv, ci = vals[:, :k].to(torch.float64), idx[:, :k]
        finite = cv != -math.inf
        p = torch.where(finite, torch.exp((cv - cv[:, :1]) * inv_t), 0.0)
        p = p / p.sum(dim=-1, keepdim=True)
        values = self._values(rows, ci, sixteen=False)
        for layer in range(int(p_["layers"])):
            g = ((values >> layer) & 1).bool()
            p1 = torch.where(g, p, 0.0).sum(dim=-1, keepdim=True)
            live = (p1 > 0.0) & (p1 < 1.0)
            q0 = 1.0 - p1
            f1 = (1.0 - q0**n) / torch.where(live, p1, 1.0)
            f0 = q0 ** (n - 1)
            p = torch.where(live, p * torch.where(g, f1, f0), p)
        lp = torch.log(p / p.sum(dim=-1, keepdim=True)).to(logits.dtype)
        out = torch.full_like(logits, -math.inf)
        return out.scatter(1, ci, torch.where(finite, lp, -math.inf))
