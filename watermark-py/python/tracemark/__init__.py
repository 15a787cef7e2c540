"""tracemark: keyed LLM watermarks with exact statistical detection.

The Rust core does the work; this package is a thin, typed layer over it.

Watermark a logits row in place (numpy float32, no copy) and test text later:

>>> import numpy as np
>>> import tracemark as tm
>>> key = tm.Key.generate()
>>> scheme = tm.Scheme(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", vocab_size=1000)
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
>>> report = tm.Detector(key, scheme.config, 1000).detect_ids(ids[1:], prompt=ids[:1])
>>> report.verdict, report.log10_p < -6
('detected', True)

Errors are typed and subclass ``ValueError``:

>>> tm.Scheme(key, "kgw:gamma=1.5,delta=2,context=lefthash:1", vocab_size=10)
Traceback (most recent call last):
...
tracemark.InvalidParameterError: invalid gamma = 1.5: expected a green fraction in [1/65536, 65535/65536], e.g. 0.25

``tracemark.hf`` plugs a scheme into transformers' ``generate``.
"""

from ._native import (
    SPEC_VERSION,
    Detection,
    Detector,
    EmptyInputError,
    InvalidKeyError,
    InvalidParameterError,
    Key,
    KeyFileExistsError,
    Keyring,
    KeyringDetector,
    LogitsLayoutError,
    NonFiniteLogitError,
    Scheme,
    SeenContexts,
    Step,
    TokenizerError,
    TokenOutOfRangeError,
    Tokenizer,
    TracemarkError,
    TracemarkIOError,
    VocabMismatchError,
    __version__,
    scan_corpus,
)

__all__ = [
    "SPEC_VERSION",
    "Detection",
    "Detector",
    "EmptyInputError",
    "InvalidKeyError",
    "InvalidParameterError",
    "Key",
    "KeyFileExistsError",
    "Keyring",
    "KeyringDetector",
    "LogitsLayoutError",
    "NonFiniteLogitError",
    "Scheme",
    "SeenContexts",
    "Step",
    "TokenizerError",
    "TokenOutOfRangeError",
    "Tokenizer",
    "TracemarkError",
    "TracemarkIOError",
    "VocabMismatchError",
    "__version__",
    "scan_corpus",
]
