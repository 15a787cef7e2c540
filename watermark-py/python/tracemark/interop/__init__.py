"""Exact tests for the watermarks others deploy: transformers' KGW
(``WatermarkLogitsProcessor``), SynthID-Text and vLLM's Gumbel watermark
(``algorithm="gumbel"`` and ``"dual_key_gumbel"``).

Each detector recomputes the owner's per-token values (green bit, g-values,
Gumbel score) exactly as the owner's generator did, given the owner's key and
configuration, and tests them with tracemark's rules: prompt tokens are never
scored, a repeated observation is scored once (``Dedup.PAIR``, SPEC §10), and
the p-value is the exact tail of the null distribution in log space
(``log10_p`` stays finite far below 1e-308); the owner's own score and p-value
are reported beside it. ``docs/interop.md`` says what each detector reads,
which owner versions were checked, and how the p-values differ and why.

Reports speak the native report's vocabulary: a verdict is ``"detected"``,
``"not_detected"`` or ``"inconclusive"`` (:class:`Verdict` is a ``str``
enum of those words, as ``tracemark.Detection.verdict`` gives them), dedup
``"pair"``, ``"context"`` or ``"none"``. One module per foreign scheme
(``hf_kgw``, ``synthid``, ``vllm_gumbel``) and the shared ``report``; every
keyed value the readers compute and every tail is computed in Rust (the
verifier's ``interop`` module and tracemark-stats) through the native
bindings. The green lists of transformers' KGW and SynthID's sampling table
are torch's draws under the owner's seeds: torch's generator is the owner's
PRF, so they stay in torch.

>>> from tracemark.interop import vllm_gumbel_detector
>>> detector = vllm_gumbel_detector(key=0x1234_5678_9ABC_DEF0, context_width=4)
>>> result = detector.detect([791, 4062, 18328, 39935, 35308, 927, 279, 16053, 5679])
>>> result.report.verdict.value, result.report.scored
('not_detected', 9)
>>> len(result.values) == 9 and result.report.owner.detector.startswith("vLLM")
True

Key material is never logged, printed or put in a report: a report carries a
public key id (a domain-separated SHA-256 fingerprint). A fingerprint hides
nothing about a low-entropy key (the owners' documented defaults are small
integers): it names a key, it does not protect one.
"""


from .hf_kgw import HfKgwDetector, hf_kgw_detector
from .report import (
    ALPHA,
    Dedup,
    ExactTest,
    Inconclusive,
    InteropDetection,
    InteropReport,
    OwnerScore,
    TokenStatus,
    Verdict,
)
from .synthid import SynthIdDetector, synthid_detector
from .vllm_gumbel import VllmDualKeyGumbelDetector, VllmGumbelDetector, vllm_gumbel_detector

__all__ = [
    "ALPHA",
    "Dedup",
    "ExactTest",
    "HfKgwDetector",
    "Inconclusive",
    "InteropDetection",
    "InteropReport",
    "OwnerScore",
    "SynthIdDetector",
    "TokenStatus",
    "Verdict",
    "VllmDualKeyGumbelDetector",
    "VllmGumbelDetector",
    "hf_kgw_detector",
    "synthid_detector",
    "vllm_gumbel_detector",
]
