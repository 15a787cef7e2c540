"""tracemark: keyed LLM watermarks with exact statistical detection.

The Rust core does the work; this package is a thin, typed layer over it.

Watermark a logits row in place (numpy float32, no copy) and test text later:

>>> import numpy as np
>>> import tracemark as tm
>>> key = tm.Key.generate()
>>> scheme = tm.Scheme.kgw(key, gamma=0.25, delta=2, context="lefthash:1", vocab_size=1000)
>>> scheme.describe()  # the same scheme as tm.Scheme(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", 1000)
'kgw:gamma=0.25,delta=2,context=lefthash:1'
>>> logits = np.zeros(1000, dtype=np.float32)
>>> scheme.process([5, 7, 11], logits).watermarked
True
>>> sorted(set(logits.tolist()))  # green tokens got +2
[0.0, 2.0]

Detection gives an exact p-value, finite in log space however small:

>>> rng = np.random.default_rng(0)
>>> ids = [1]
>>> for _ in range(200):
...     row = rng.normal(size=1000).astype(np.float32)
...     _ = scheme.process(ids, row)
...     ids.append(int(np.argmax(row)))
>>> report = tm.Detector(key, scheme.config, 1000).detect_ids(ids[:1], ids[1:])  # prompt, completion
>>> report.verdict, report.outcome.status, report.outcome.log10_p < -6
('detected', 'tested', True)

Each scheme states its contract; integrations ask it instead of the scheme's name:

>>> scheme.contract.generation, scheme.contract.skip_repeated
(Generation.BIAS, False)
>>> scheme.bias([5, 7, 11]).max()  # the bias a BIAS scheme adds, e.g. on an accelerator
np.float32(2.0)
>>> gumbel = tm.Scheme.gumbel(key, temperature=1.0, context="lefthash:4", vocab_size=1000)
>>> gumbel.contract.controls_sampling, gumbel.contract.null.distribution
(True, 'exponential')

Errors are typed and subclass ``ValueError``:

>>> tm.Scheme(key, "kgw:gamma=1.5,delta=2,context=lefthash:1", vocab_size=10)
Traceback (most recent call last):
...
tracemark.InvalidParameterError: invalid gamma = 1.5: expected a green fraction in [1/65536, 65535/65536], e.g. 0.25

``tracemark.hf`` plugs a scheme into transformers' ``generate``.

Signed provenance receipts (Ed25519; signing keys are not watermark keys)
prove what a server returned, exactly:

>>> signer = tm.SigningKey.generate()
>>> receipt = tm.sign_receipt(signer, "An answer.", "smollm2", scheme=scheme.config, key_id=key.id, label="account/alice")
>>> check = tm.verify_receipt(tm.Receipt.from_json(receipt.to_json()), "An answer.", [signer.verifying_key()])
>>> check.signature, check.text, check.watermark, check.holds
('valid', 'exact', 'not_checked', True)
>>> tm.verify_receipt(receipt, "Another answer.", [signer.verifying_key()]).text
'mismatch'
"""

from ._native import (
    SPEC_VERSION,
    SENTENCES_VERSION,
    CanonicalReport,
    Contract,
    Counts,
    Detection,
    DetectionStream,
    Detector,
    Embedder,
    EmptyInputError,
    Generation,
    InvalidKeyError,
    InvalidParameterError,
    Key,
    KeyFileExistsError,
    KeyResult,
    KeyTest,
    Keyring,
    KeyringDetection,
    KeyringDetector,
    LogitsLayoutError,
    MalformedReceiptError,
    ModelError,
    NonFiniteLogitError,
    NotABiasSchemeError,
    Null,
    Outcome,
    Projection,
    Receipt,
    ReceiptCheck,
    Scheme,
    SchemeConfig,
    SeenContexts,
    Semantic,
    SigningKey,
    Step,
    TestReport,
    TokenOutOfRangeError,
    Tokenizer,
    TokenizerError,
    TracemarkError,
    TracemarkIOError,
    VerifyingKey,
    VocabMismatchError,
    WeightedDetection,
    WindowReport,
    __version__,
    canonicalize,
    detection_report,
    position_weights,
    scan_corpus,
    sentence_spans,
    sentences,
    sign_receipt,
    verify_receipt,
)
from .scoring import EditRobustDetection, detect_edit_robust, edit_aware_weights, realign
from .suspect_api import radioactivity_api

__all__ = [
    "radioactivity_api",
    "SPEC_VERSION",
    "SENTENCES_VERSION",
    "CanonicalReport",
    "Contract",
    "Counts",
    "Detection",
    "DetectionStream",
    "Detector",
    "Embedder",
    "EmptyInputError",
    "Generation",
    "InvalidKeyError",
    "InvalidParameterError",
    "Key",
    "KeyFileExistsError",
    "KeyResult",
    "KeyTest",
    "Keyring",
    "KeyringDetection",
    "KeyringDetector",
    "LogitsLayoutError",
    "MalformedReceiptError",
    "ModelError",
    "NonFiniteLogitError",
    "NotABiasSchemeError",
    "Null",
    "Outcome",
    "Projection",
    "Receipt",
    "ReceiptCheck",
    "Scheme",
    "SchemeConfig",
    "SeenContexts",
    "Semantic",
    "SigningKey",
    "Step",
    "TestReport",
    "TokenOutOfRangeError",
    "Tokenizer",
    "TokenizerError",
    "TracemarkError",
    "TracemarkIOError",
    "VerifyingKey",
    "VocabMismatchError",
    "WeightedDetection",
    "WindowReport",
    "__version__",
    "canonicalize",
    "detection_report",
    "edit_aware_weights",
    "EditRobustDetection",
    "detect_edit_robust",
    "realign",
    "position_weights",
    "radioactivity_api",
    "scan_corpus",
    "sentence_spans",
    "sentences",
    "sign_receipt",
    "verify_receipt",
]
