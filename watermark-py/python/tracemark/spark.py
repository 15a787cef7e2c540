"""Corpus scans and black-box radioactivity tests on Apache Spark.

The same results as ``tracemark scan`` / ``tracemark radioactivity`` (and
:func:`tracemark.scan_corpus`) on the same corpus, for corpora too large for
one machine: each executor tokenizes and keys its partitions with the native
detector (``mapInArrow``), the observations are deduplicated across the whole
corpus (by ``(seed, token)`` pair in buckets), and the driver runs the exact test
on the totals. Counts, statistic and p-value are equal to the single-machine
scan's, bit for bit::

    from pyspark.sql import SparkSession
    import tracemark as tm
    from tracemark import spark as tms

    spark = SparkSession.builder.getOrCreate()
    result = tms.scan("hdfs:///corpora/answers.jsonl", tm.Key.load("our.key"),
                      "kgw:gamma=0.25,delta=2,context=lefthash:1", tokenizer="tokenizer.json")
    result.aggregate.verdict, result.aggregate.outcome.log10_p
    result.documents.where("verdict = 'detected'").show()   # one row per document

How the pieces map onto Spark:

- **lines**: a path is read with Spark's text source split on ``\\n`` only;
  each line's 1-based number (its place in the corpus: blank lines count, as
  in the CLI) comes from the file blocks' line counts (one cheap JVM pass).
  Several files are one corpus in the order of their paths, as ``cat`` in that
  order would give. A DataFrame needs a ``value`` column (one JSONL document
  per row, string or binary) and a ``line`` column (its 1-based line number).
- **per partition**: the executor builds the detector once from the key bytes
  (a broadcast variable; never logged) and the tokenizer file (broadcast
  bytes), and :func:`tracemark._native.observe_arrow` gives each document's
  result (exactly the line ``tracemark scan`` writes, canonical forms of text
  and errors per line included) and its scored observations after the
  within-document deduplication. The lines go in as the Arrow batch's
  buffers and the results come back as buffers: no Python object per
  document either way.
- **across documents**: ``pair`` deduplication (the default) keeps the first
  observation of each ``(seed, token)`` pair; its score is a function of the
  pair, so the distinct pairs give the kept count and scores. For integer
  scores (``kgw``, ``tournament``) each Arrow batch's observations are
  deduplicated natively and packed by a hash of the pair into buckets
  (in the same native call, as :func:`tracemark._native.pair_buckets` does: one row per bucket and batch
  instead of one per observation), and each bucket's rows are merged by
  :func:`tracemark._native.merge_pair_bucket` (``groupBy("bucket")
  .applyInArrow``); ``gumbel``'s go through Spark's ``min`` per pair over the
  corpus order. ``context`` and ``none`` are supported too (first of pair
  and of context key, by ``min`` over the corpus order; or everything).
- **the driver**: sums and counts, and :func:`tracemark._native.corpus_test`
  runs the exact test. Integer scores (``kgw``, ``tournament``) are summed by
  Spark in any order; ``gumbel``'s real-valued scores are added in corpus order
  on the driver, streaming one sorted partition at a time
  (``toLocalIterator``), so the float total has the scan's very bits.

What is not here: keyrings (cohort attribution: run one test per key and
combine with :func:`tracemark.Keyring`'s Holm correction), reading-mode
radioactivity, window searches and the spoof-artifact test (which need every
observation in order; ``tracemark scan`` runs neither on its aggregate).

On a cluster the executors need the ``tracemark`` wheel (a native extension:
``spark.submit.pyFiles`` cannot ship it); see ``docs/distillation.md``,
"At corpus scale: Spark". pyspark is imported lazily: ``import tracemark``
never needs it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from . import _native
from ._native import (
    ContextFilter,
    Detection,
    Detector,
    InvalidParameterError,
    Key,
    Scheme,
    SchemeConfig,
    Tokenizer,
    TracemarkError,
    corpus_test,
    merge_pair_bucket,
    observe_arrow,
    reference_context_keys,
    sum_in_order,
    total_is_order_free,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkScan", "scan", "radioactivity", "DOCUMENT_COLUMNS"]

_StrPath = Union[str, "os.PathLike[str]"]

#: The columns of :attr:`SparkScan.documents`: the fields of a ``tracemark scan``
#: line (``id`` as JSON, ``verdict`` / ``log10_p`` null on error) and ``json``,
#: that line itself.
DOCUMENT_COLUMNS = ["line", "id", "verdict", "log10_p", "tokens", "scored", "canonical_changes", "error", "json"]

# One row per document: its result, whether it enters the aggregate, its counts and its observations.
_DOCUMENT_FIELDS = [
    ("line", "long"), ("id", "string"), ("verdict", "string"), ("log10_p", "double"), ("tokens", "long"),
    ("scored", "long"), ("canonical_changes", "long"), ("error", "string"), ("json", "string"),
    ("enters", "boolean"), ("prompt", "long"), ("seen", "long"), ("skipped_duplicate", "long"),
    ("skipped_short_context", "long"), ("skipped_by_filter", "long"),
]
_OBSERVATION_FIELDS = [
    ("position", "long"), ("context_key", "long"), ("seed", "long"), ("token", "long"), ("score", "double"),
]
# Then the document's number of observations, and the observations themselves, nested; or, when the scan
# deduplicates pairs with packed buckets, no nested observations and extra rows that carry the buckets
# (``bucket`` and ``pairs`` set, every document field null).
_OBSERVED = ", ".join(f"{n} {t}" for n, t in _DOCUMENT_FIELDS) + ", n_observations long, observations array<struct<" + ",".join(
    f"{n}:{t}" for n, t in _OBSERVATION_FIELDS
) + ">>, bucket int, pairs binary"
_MERGED = "n long, total double"
_REFERENCE = "line long, context_key long, error_class string, error string"


@dataclass(frozen=True)
class SparkScan:
    """The result of :func:`scan`.

    ``documents`` has one row per document line (:data:`DOCUMENT_COLUMNS`;
    ``documents.orderBy("line").select("json")`` is what ``tracemark scan``
    writes); ``summary`` is ``tracemark scan --json``'s ``summary`` (with
    ``corpus_sha256`` None unless the corpus was hashed); ``aggregate`` is the
    aggregate test. Call :meth:`unpersist` when done with ``documents``.
    """

    documents: "DataFrame"
    summary: Dict[str, Any]
    aggregate: Detection
    _observed: "DataFrame"
    _broadcasts: Tuple[Any, ...] = ()

    def unpersist(self) -> None:
        """Frees the cached per-document results, and removes the key and the
        other broadcast values from the executors (``documents`` is then gone)."""
        self._observed.unpersist()
        for b in self._broadcasts:
            b.destroy()


@dataclass(frozen=True)
class _Setup:
    """What the executors need to build the detector (pickled with the task closures)."""

    key: Any = field(repr=False)  # a broadcast of the key bytes
    scheme: str
    vocab_size: int
    dedup: str
    alpha: float
    min_scored: int
    canonicalize: bool
    tokenizer: Any  # a broadcast of the tokenizer file's bytes, or None
    tokenizer_sha256: Optional[str]  # names the tokenizer in the workers' cache
    nonce: str  # names this scan's setup in the workers' cache
    version: Tuple[str, str]  # the driver's tracemark and spec versions

    def build(self) -> Tuple[Detector, Optional[Tokenizer]]:
        """The detector and tokenizer, built once per Python worker and scan
        (Spark reuses workers across partitions; a large tokenizer takes a
        third of a second to load)."""
        cached = _BUILT.get(self.nonce)
        if cached is None:
            _BUILT.clear()
            cached = _BUILT[self.nonce] = self._build()
        return cached

    def _build(self) -> Tuple[Detector, Optional[Tokenizer]]:
        here = (_native.__version__, _native.SPEC_VERSION)
        if here != self.version:
            raise InvalidParameterError(
                f"this executor runs tracemark {here[0]} (spec {here[1]}), the driver {self.version[0]} "
                f"(spec {self.version[1]}): install the driver's wheel on the executors"
            )
        detector = Detector(
            Key.from_bytes(self.key.value),
            self.scheme,
            self.vocab_size,
            dedup=self.dedup,
            alpha=self.alpha,
            min_scored=self.min_scored,
            canonicalize=self.canonicalize,
        )
        if self.tokenizer is None or self.tokenizer_sha256 is None:
            return detector, None
        return detector, _tokenizer(self.tokenizer_sha256, self._load_tokenizer)

    def _load_tokenizer(self) -> Tokenizer:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "tokenizer.json"
            path.write_bytes(self.tokenizer.value)
            return Tokenizer.from_file(path)


# The detector and tokenizer of the last scan this worker process served, by its setup's nonce.
_BUILT: Dict[str, Tuple[Detector, Optional[Tokenizer]]] = {}
# The last tokenizer this process loaded, by the SHA-256 of its file: scans of one session that use the
# same tokenizer load it once per worker (and the driver), not once per scan. Tokenizers are public.
_TOKENIZERS: Dict[str, Tokenizer] = {}


def _tokenizer(sha256: str, load: Any) -> Tokenizer:
    """The tokenizer whose file has this SHA-256: ``load()`` unless cached."""
    cached = _TOKENIZERS.get(sha256)
    if cached is None:
        cached = load()
        _TOKENIZERS.clear()
        _TOKENIZERS[sha256] = cached
    return cached


class _Numbering:
    """1-based corpus line numbers of rows read by Spark's text source: the
    first line of each file block (file, block start), and the next index in
    each block (rows of a block arrive contiguous and in order)."""

    def __init__(self, first_line: Dict[Tuple[str, int], int]):
        self.first_line = first_line
        self.seen: Dict[Tuple[str, int], int] = {}

    def __call__(self, batch: "pa.RecordBatch") -> np.ndarray:
        # Vectorised over the batch's runs of one block (one or two per batch), not per row.
        files = batch.column("file").dictionary_encode()
        index = files.indices.to_numpy(zero_copy_only=False)
        blocks = batch.column("block").to_numpy(zero_copy_only=False)
        n = len(index)
        out = np.empty(n, dtype=np.int64)
        if n == 0:
            return out
        change = np.flatnonzero((index[1:] != index[:-1]) | (blocks[1:] != blocks[:-1])) + 1
        starts = [0, *change.tolist(), n]
        names = files.dictionary.to_pylist()
        for a, b in zip(starts[:-1], starts[1:]):
            block = (names[index[a]], int(blocks[a]))
            seen = self.seen.get(block, 0)
            out[a:b] = self.first_line[block] + seen + np.arange(b - a, dtype=np.int64)
            self.seen[block] = seen + (b - a)
        return out


def _line_numbers(numbering: Any, batch: "pa.RecordBatch") -> np.ndarray:
    if numbering is None:
        return np.asarray(batch.column("line").to_numpy(zero_copy_only=False), dtype=np.int64)
    return numbering(batch)


def _partition(name: str, *args: Any):
    """A partition function for ``mapInArrow``. It refers to this module by
    name, so that the executors import it (native classes do not pickle by value)."""

    def run(batches: Iterator["pa.RecordBatch"]) -> Iterator["pa.RecordBatch"]:
        import importlib

        return getattr(importlib.import_module("tracemark.spark"), name)(*args, batches)

    return run


def _arrow_lines(column: "pa.Array") -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """The offsets, bytes and validity of a binary (or string) Arrow column, as numpy views of its
    buffers (no copy, no Python object per line)."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = column.cast(pa.large_binary() if pa.types.is_large_string(column.type) else pa.binary())
    wide = pa.types.is_large_binary(column.type)
    if not (wide or pa.types.is_binary(column.type)):
        raise InvalidParameterError(f"the value column must be binary or string, not {column.type}")
    _, offsets, data = column.buffers()
    n = len(column)
    offsets = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32)[column.offset : column.offset + n + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, dtype=np.uint8)
    valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
    return offsets, data, valid


def _arrow_column(buffers: Tuple[Any, ...], kind: "pa.DataType") -> "pa.Array":
    """An Arrow column from the buffers :func:`tracemark._native.observe_arrow` returns."""
    import pyarrow as pa

    bitmap, *rest = buffers
    n = len(rest[0]) - 1 if len(rest) == 2 else len(rest[0])
    return pa.Array.from_buffers(
        kind, n, [None if bitmap is None else pa.py_buffer(bitmap)] + [pa.py_buffer(b) for b in rest]
    )


def _observe(
    setup: _Setup, first_line: Any, context_keys: Any, buckets: int, batches: Iterator["pa.RecordBatch"]
) -> Iterator["pa.RecordBatch"]:
    """Each batch's documents; with ``buckets``, their observations deduplicated by pair within the batch
    and packed by bucket (:func:`tracemark._native.pair_buckets`) into ``buckets`` extra rows, instead of
    nested in the documents' rows. The lines go to the native scan as the Arrow batch's buffers, and the
    results come back as buffers (:func:`tracemark._native.observe_arrow`): no Python object per document."""
    import pyarrow as pa

    detector, tokenizer = setup.build()
    keys = None if context_keys is None else ContextFilter(context_keys.value)
    numbering = None if first_line is None else _Numbering(first_line.value)
    arrow = {"long": pa.int64(), "string": pa.string(), "double": pa.float64(), "boolean": pa.bool_()}
    nested_type = pa.list_(pa.struct([(n, arrow[t]) for n, t in _OBSERVATION_FIELDS]))
    names = [n for n, _ in _DOCUMENT_FIELDS] + ["n_observations", "observations", "bucket", "pairs"]
    for batch in batches:
        lines = _line_numbers(numbering, batch)
        offsets, data, valid = _arrow_lines(batch.column("value"))
        cols = observe_arrow(detector, lines, offsets, data, valid=valid, tokenizer=tokenizer,
                             context_filter=keys, buckets=buckets)
        n = len(cols["line"])
        if buckets:
            nested = pa.nulls(n, nested_type)
        else:
            # Spark has no unsigned type: 64-bit keys and seeds travel as their bit patterns.
            observations = pa.StructArray.from_arrays(
                [pa.array(np.asarray(cols[f]).view(np.int64) if f in ("context_key", "seed")
                          else np.asarray(cols[f]).astype(arrow[t].to_pandas_dtype()), arrow[t])
                 for f, t in _OBSERVATION_FIELDS],
                names=[f for f, _ in _OBSERVATION_FIELDS],
            )
            nested = pa.ListArray.from_arrays(pa.array(np.asarray(cols["obs_offsets"]), pa.int32()), observations)
        yield pa.RecordBatch.from_arrays(
            [_arrow_column(cols[f], arrow[t]) if isinstance(cols[f], tuple) else pa.array(cols[f], arrow[t])
             for f, t in _DOCUMENT_FIELDS]
            + [pa.array(cols["n_observations"], pa.int64()), nested, pa.nulls(n, pa.int32()), pa.nulls(n, pa.binary())],
            names=names,
        )
        if buckets:
            kept = np.asarray(cols["bucket"], dtype=np.int32)
            m = len(kept)
            yield pa.RecordBatch.from_arrays(
                [pa.nulls(m, arrow[t]) for _, t in _DOCUMENT_FIELDS]
                + [pa.nulls(m, pa.int64()), pa.nulls(m, nested_type), pa.array(kept, pa.int32()),
                   _arrow_column(cols["pairs"], pa.binary())],
                names=names,
            )


def _merge_buckets(table: "pa.Table") -> "pa.Table":
    """One bucket's blobs from every partition: its distinct pairs' count and score total
    (:func:`tracemark._native.merge_pair_bucket`)."""
    import pyarrow as pa

    n, total = merge_pair_bucket(table.column("pairs").to_pylist())
    return pa.table({"n": pa.array([n], pa.int64()), "total": pa.array([total], pa.float64())})


def _reference_keys_of(
    setup: _Setup, first_line: Any, batches: Iterator["pa.RecordBatch"]
) -> Iterator["pa.RecordBatch"]:
    import pyarrow as pa

    detector, tokenizer = setup.build()
    numbering = None if first_line is None else _Numbering(first_line.value)
    for batch in batches:
        lines = _line_numbers(numbering, batch)
        values = batch.column("value").to_pylist()
        try:
            found = reference_context_keys(detector, lines, values, tokenizer=tokenizer)
        except TracemarkError:
            # Find the batch's first bad line; the driver raises the corpus's first.
            for line, value in zip(lines, values):
                try:
                    reference_context_keys(detector, np.array([line]), [value], tokenizer=tokenizer)
                except TracemarkError as e:
                    yield pa.RecordBatch.from_pydict(
                        {"line": [int(line)], "context_key": [None], "error_class": [type(e).__name__],
                         "error": [str(e)]},
                        schema=pa.schema([("line", pa.int64()), ("context_key", pa.int64()),
                                          ("error_class", pa.string()), ("error", pa.string())]),
                    )
                    return
            raise
        n = len(found)
        yield pa.RecordBatch.from_arrays(
            [pa.nulls(n, pa.int64()), pa.array(found.view(np.int64)), pa.nulls(n, pa.string()),
             pa.nulls(n, pa.string())],
            names=["line", "context_key", "error_class", "error"],
        )


def _session(spark: Optional["SparkSession"]) -> "SparkSession":
    from pyspark.sql import SparkSession

    if spark is not None:
        return spark
    active = SparkSession.getActiveSession()
    return active if active is not None else SparkSession.builder.getOrCreate()


def _lines(spark: "SparkSession", corpus: Union[_StrPath, "DataFrame"]) -> Tuple["DataFrame", Any]:
    """The corpus as rows of ``value`` (binary) and either ``line`` or
    ``file``/``block`` (numbered on the executors from the broadcast first lines)."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    if isinstance(corpus, DataFrame):
        if "value" not in corpus.columns or "line" not in corpus.columns:
            raise InvalidParameterError(
                "a corpus DataFrame needs a `value` column (one JSONL document per row) and a `line` "
                "column (its 1-based line number: the corpus order), e.g. from spark.read.text and zipWithIndex"
            )
        rows = corpus.select(F.col("line").cast("long").alias("line"), F.col("value").cast("binary").alias("value"))
        return rows, None
    rows = (
        spark.read.option("lineSep", "\n")
        .text(os.fspath(corpus))
        .select(
            F.col("value").cast("binary").alias("value"),
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
        )
    )
    first, line = {}, 1
    for r in sorted(rows.groupBy("file", "block").count().collect(), key=lambda r: (r["file"], r["block"])):
        first[(r["file"], r["block"])] = line
        line += r["count"]
    return rows, spark.sparkContext.broadcast(first)


def _sha256(corpus: Union[_StrPath, "DataFrame"]) -> str:
    path = Path(os.fspath(corpus)) if isinstance(corpus, (str, os.PathLike)) else None
    if path is None or not path.is_file():
        raise InvalidParameterError("hash_corpus needs the corpus as one file the driver can read")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _setup(
    spark: "SparkSession",
    key: Key,
    scheme: Union[str, SchemeConfig],
    tokenizer: Optional[_StrPath],
    vocab_size: Optional[int],
    dedup: str,
    alpha: float,
    min_scored: int,
    canonicalize: bool,
) -> Tuple[_Setup, Detector, Optional[Tokenizer]]:
    data: Optional[bytes] = None
    digest: Optional[str] = None
    tok: Optional[Tokenizer] = None
    if tokenizer is not None:
        path = Path(os.fspath(tokenizer))
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        tok = _tokenizer(digest, lambda: Tokenizer.from_file(path))
    vocab = vocab_size if vocab_size is not None else (tok.vocab_size if tok is not None else None)
    if vocab is None:
        raise InvalidParameterError("id documents need vocab_size (or a tokenizer) to check ids against")
    # The driver's detector checks every parameter before any task starts.
    detector = Detector(key, scheme, vocab, dedup=dedup, alpha=alpha, min_scored=min_scored, canonicalize=canonicalize)
    sc = spark.sparkContext
    setup = _Setup(
        key=sc.broadcast(key.secret_bytes()),
        scheme=Scheme(key, scheme, vocab).describe(),
        vocab_size=vocab,
        dedup=dedup,
        alpha=alpha,
        min_scored=min_scored,
        canonicalize=canonicalize,
        tokenizer=None if data is None else sc.broadcast(data),
        tokenizer_sha256=digest,
        nonce=uuid.uuid4().hex,
        version=(_native.__version__, _native.SPEC_VERSION),
    )
    return setup, detector, tok


def _reference_keys(spark: "SparkSession", setup: _Setup, reference: Union[_StrPath, "DataFrame"]) -> Any:
    from pyspark.sql import functions as F

    rows, first_line = _lines(spark, reference)
    found = rows.mapInArrow(_partition("_reference_keys_of", setup, first_line), _REFERENCE).persist()
    try:
        bad = found.where(F.col("error").isNotNull()).orderBy("line").limit(1).collect()
        if bad:
            cls = getattr(_native, bad[0]["error_class"], TracemarkError)
            raise cls(bad[0]["error"])
        keys = found.where(F.col("context_key").isNotNull()).select("context_key").distinct().toArrow()
        keys = keys.column(0).to_numpy()
    finally:
        found.unpersist()
        if first_line is not None:
            first_line.destroy()
    return spark.sparkContext.broadcast(np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64))


def _kept(observations: "DataFrame", dedup: str) -> "DataFrame":
    """The observations the scan keeps across documents (module docstring)."""
    from pyspark.sql import functions as F

    if dedup == "none":
        return observations
    order = F.struct("line", "position")
    if dedup == "pair":
        return observations.groupBy("seed", "token").agg(
            F.min(F.struct("line", "position", "score")).alias("first")
        ).select("first.*")
    first_context = observations.groupBy("context_key").agg(F.min(order).alias("first"))
    first_pair = observations.groupBy("seed", "token").agg(F.min(order).alias("first"))
    firsts = first_pair.select("first.line", "first.position").intersect(
        first_context.select("first.line", "first.position")
    )
    return observations.join(firsts, ["line", "position"], "left_semi")


def _total_in_order(kept: "DataFrame") -> float:
    """The sum of the kept scores in corpus order, one sorted partition at a time through the driver."""
    import pyarrow as pa

    def pack(batches: Iterator["pa.RecordBatch"]) -> Iterator["pa.RecordBatch"]:
        for b in batches:
            yield pa.RecordBatch.from_arrays(
                [pa.array([b.column("score").to_numpy().tobytes()], pa.binary())], names=["scores"]
            )

    total = -0.0
    chunks = kept.orderBy("line", "position").select("score").mapInArrow(pack, "scores binary")
    for row in chunks.toLocalIterator():
        total = sum_in_order(total, np.frombuffer(row["scores"], dtype=np.float64))
    return total


def scan(
    corpus: Union[_StrPath, "DataFrame"],
    key: Key,
    scheme: Union[str, SchemeConfig],
    *,
    tokenizer: Optional[_StrPath] = None,
    vocab_size: Optional[int] = None,
    dedup: str = "pair",
    alpha: float = 1e-6,
    min_scored: int = 10,
    canonicalize: bool = True,
    reference: Optional[Union[_StrPath, "DataFrame"]] = None,
    hash_corpus: bool = False,
    spark: Optional["SparkSession"] = None,
) -> SparkScan:
    """Scans a JSONL corpus (a path Spark can read, or a DataFrame of
    ``line`` and ``value``) for ``key``'s watermark under ``scheme``: a verdict
    per document and the aggregate test, deduplicated across documents, as
    ``tracemark scan`` gives on the same corpus with the same options
    (``tokenizer`` is the model's ``tokenizer.json``, needed for text
    documents; ``vocab_size`` defaults to its vocabulary). With
    ``reference`` (our own watermarked outputs, path or DataFrame), only
    observations at contexts seen there are scored, as ``tracemark
    radioactivity --reference``. ``hash_corpus`` reads the corpus file once
    more on the driver for the report's ``corpus_sha256``.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark = _session(spark)
    setup, detector, tok = _setup(spark, key, scheme, tokenizer, vocab_size, dedup, alpha, min_scored, canonicalize)
    digest = _sha256(corpus) if hash_corpus else None
    context_keys = None if reference is None else _reference_keys(spark, setup, reference)
    rows, first_line = _lines(spark, corpus)
    # Pair dedup of integer scores: each batch's pairs packed by bucket, merged per bucket (module docstring).
    packed = total_is_order_free(detector) and dedup == "pair"
    buckets = max(16, int(spark.conf.get("spark.sql.shuffle.partitions", "200"))) if packed else 0
    observed = rows.mapInArrow(_partition("_observe", setup, first_line, context_keys, buckets), _OBSERVED).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    documents = observed.where(F.col("bucket").isNull())
    entered = F.col("enters")
    tested = F.col("error").isNull()

    def count_if(cond: Any) -> Any:
        return F.sum(F.when(cond, 1).otherwise(0))

    def sum_if_entered(name: str) -> Any:
        return F.sum(F.when(entered, F.col(name)).otherwise(0)).alias(name)

    s = documents.agg(
        F.count(F.lit(1)).alias("documents"),
        count_if(~tested).alias("errors"),
        count_if(tested & (F.col("verdict") == "detected")).alias("detected"),
        count_if(tested & (F.col("verdict") == "not_detected")).alias("not_detected"),
        count_if(tested & (F.col("verdict") == "inconclusive")).alias("inconclusive"),
        sum_if_entered("prompt"),
        sum_if_entered("seen"),
        sum_if_entered("skipped_duplicate"),
        sum_if_entered("skipped_short_context"),
        sum_if_entered("skipped_by_filter"),
        F.sum(F.when(entered, F.col("n_observations")).otherwise(0)).alias("observations"),
    ).collect()[0]
    observations = documents.where(entered).select("line", F.explode("observations").alias("o")).select("line", "o.*")
    if packed:
        # The score is a function of (seed, token): each bucket's distinct pairs, counted and summed
        # (integers: exact in any order).
        merged = observed.where(F.col("bucket").isNotNull()).select("bucket", "pairs").groupBy("bucket")
        t = merged.applyInArrow(_merge_buckets, _MERGED).agg(
            F.sum("n").alias("n"), F.sum(F.col("total").cast("long")).alias("total")
        ).collect()[0]
        n, total = int(t["n"] or 0), float(t["total"] or 0)
    elif total_is_order_free(detector):
        # Integer scores: Spark's sum in any order is exact.
        kept = _kept(observations, dedup)
        t = kept.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("score").cast("long")).alias("total")).collect()[0]
        n, total = int(t["n"]), float(t["total"] or 0)
    else:
        ordered = _kept(observations, dedup).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            n = ordered.count()
            total = _total_in_order(ordered)
        finally:
            ordered.unpersist()
    observed_total = int(s["observations"] or 0)
    aggregate = corpus_test(
        detector,
        prompt=int(s["prompt"] or 0),
        seen=int(s["seen"] or 0),
        scored=n,
        skipped_duplicate=int(s["skipped_duplicate"] or 0) + observed_total - n,
        skipped_short_context=int(s["skipped_short_context"] or 0),
        skipped_by_filter=int(s["skipped_by_filter"] or 0),
        total=total,
        tokenizer=tok,
        input_sha256=digest,
    )
    summary: Dict[str, Any] = {
        name: int(s[name] or 0) for name in ("documents", "errors", "detected", "not_detected", "inconclusive")
    }
    summary["corpus_sha256"] = digest
    summary["aggregate"] = aggregate.to_dict()
    broadcasts = tuple(b for b in (setup.key, setup.tokenizer, first_line, context_keys) if b is not None)
    return SparkScan(
        documents=documents.select(*DOCUMENT_COLUMNS),
        summary=summary,
        aggregate=aggregate,
        _observed=observed,
        _broadcasts=broadcasts,
    )


def radioactivity(
    corpus: Union[_StrPath, "DataFrame"],
    key: Key,
    scheme: Union[str, SchemeConfig],
    *,
    reference: Optional[Union[_StrPath, "DataFrame"]] = None,
    tokenizer: Optional[_StrPath] = None,
    vocab_size: Optional[int] = None,
    dedup: str = "pair",
    alpha: float = 1e-6,
    min_scored: int = 10,
    canonicalize: bool = True,
    hash_corpus: bool = False,
    spark: Optional["SparkSession"] = None,
) -> Detection:
    """The black-box radioactivity test of a corpus of the suspect model's
    outputs: one exact test over every scored token, deduplicated across the
    corpus; with ``reference`` (our own watermarked outputs), scored only at
    contexts that occur there. The report ``tracemark radioactivity --json``
    gives with one key (``input_sha256`` only with ``hash_corpus``)."""
    result = scan(
        corpus,
        key,
        scheme,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
        dedup=dedup,
        alpha=alpha,
        min_scored=min_scored,
        canonicalize=canonicalize,
        reference=reference,
        hash_corpus=hash_corpus,
        spark=spark,
    )
    result.unpersist()
    return result.aggregate
