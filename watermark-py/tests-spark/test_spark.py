"""tracemark.spark on local[2] against `tracemark scan` / `tracemark radioactivity`
on the same corpus: the same per-document lines, and the same counts, statistic and
p-value (log10_p equal as floats, not approximately)."""

import json
import subprocess

import numpy as np
import pytest

import tracemark as tm
from tracemark import spark as tms

from conftest import VOCAB, corpus_lines, words


def run_cli(cli, *args):
    r = subprocess.run([cli, "--quiet", *args], capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    return r.stdout


def without_scheme_source(detection: dict) -> dict:
    """A CLI detection without `scheme_source`: where the CLI took the scheme from
    (--scheme, or the key's serving manifest) is the CLI's to say; Spark is given
    the scheme by its caller."""
    detection.pop("scheme_source", None)
    return detection


def cli_scan(cli, key_path, scheme, tokenizer, corpus, *extra):
    out = run_cli(cli, "scan", "--key", str(key_path), "--scheme", scheme, "--tokenizer", str(tokenizer),
                  "--json", "--jobs", "2", *extra, str(corpus))
    lines = out.splitlines()
    summary = json.loads(lines[-1])["summary"]
    without_scheme_source(summary["aggregate"])
    return lines[:-1], summary


@pytest.fixture
def setup(tmp_path):
    def make(scheme: str, seed: int = 0, **kw):
        key = tm.Key.generate()
        key_path = tmp_path / "scan.key"
        key.save(key_path)
        lines = corpus_lines(tm.Scheme(key, scheme, VOCAB), seed, **kw)
        corpus = tmp_path / "corpus.jsonl"
        corpus.write_text("\n".join(lines) + "\n")
        return key, key_path, corpus, lines

    return make


SCANS = [
    ("kgw:gamma=0.25,delta=2,context=lefthash:1", "pair"),
    ("kgw:gamma=0.25,delta=2,context=lefthash:1", "context"),
    ("tournament:layers=8,top_k=40,temperature=1,context=lefthash:2", "pair"),
    ("gumbel:temperature=1,context=lefthash:2", "pair"),
    ("gumbel:temperature=1,context=lefthash:2", "none"),
]


@pytest.mark.parametrize("scheme,dedup", SCANS)
def test_scan_equals_the_cli(spark, cli, setup, tokenizer_path, scheme, dedup):
    key, key_path, corpus, _ = setup(scheme)
    expected_docs, expected = cli_scan(cli, key_path, scheme, tokenizer_path, corpus, "--dedup", dedup)
    result = tms.scan(str(corpus), key, scheme, tokenizer=tokenizer_path, dedup=dedup, hash_corpus=True, spark=spark)
    try:
        docs = [r["json"] for r in result.documents.orderBy("line").select("json").collect()]
        # The very lines `tracemark scan` writes, in order.
        assert docs == expected_docs
        assert result.summary == expected
        got, want = result.summary["aggregate"], expected["aggregate"]
        assert got["counts"] == want["counts"]
        assert got["outcome"]["log10_p"] == want["outcome"]["log10_p"]  # exactly, as floats
        assert got["outcome"]["test"]["statistic"] == want["outcome"]["test"]["statistic"]
        # The corpus exercised what it should: repeats across documents, errors, both verdicts, canonical forms.
        assert expected["errors"] == 4 and expected["detected"] >= 4 and expected["not_detected"] >= 4
        assert (want["counts"]["skipped_duplicate"] > 0) == (dedup != "none")
        assert any(json.loads(d).get("canonical_changes") for d in expected_docs)
        assert result.aggregate.verdict == "detected"
        assert result.documents.rdd.getNumPartitions() > 1
    finally:
        result.unpersist()


def test_unwatermarked_corpus_and_dataframe_input(spark, cli, setup, tokenizer_path):
    scheme = "gumbel:temperature=1,context=lefthash:2"
    key, key_path, corpus, lines = setup(scheme, seed=3, plain=30)
    other = tm.Key.generate()
    other_path = key_path.with_name("other.key")
    other.save(other_path)
    expected_docs, expected = cli_scan(cli, other_path, scheme, tokenizer_path, corpus)
    # A DataFrame of (line, value) rows in any order: the line numbers give the corpus order.
    rows = [(i + 1, line) for i, line in enumerate(lines)][::-1]
    df = spark.createDataFrame(rows, "line long, value string").repartition(4)
    result = tms.scan(df, other, scheme, tokenizer=tokenizer_path, spark=spark)
    try:
        docs = [r["json"] for r in result.documents.orderBy("line").select("json").collect()]
        assert docs == expected_docs
        expected["corpus_sha256"] = None
        expected["aggregate"]["input_sha256"] = None
        assert result.summary == expected
        assert result.aggregate.verdict == "not_detected"
    finally:
        result.unpersist()


def test_radioactivity_black_box_and_filtered(spark, cli, setup, tokenizer_path, tmp_path):
    scheme = "kgw:gamma=0.25,delta=2,context=lefthash:1"
    key, key_path, corpus, lines = setup(scheme, seed=5)
    reference = tmp_path / "ours.jsonl"
    reference.write_text("\n".join(lines[:5]) + "\n\n" + json.dumps({"text": words([7, 8, 9])}) + "\n")
    common = ["--key", str(key_path), "--scheme", scheme, "--tokenizer", str(tokenizer_path), "--json"]
    black_box = without_scheme_source(json.loads(run_cli(cli, "radioactivity", *common, str(corpus))))
    filtered = without_scheme_source(
        json.loads(run_cli(cli, "radioactivity", *common, "--reference", str(reference), str(corpus))))
    got = tms.radioactivity(str(corpus), key, scheme, tokenizer=tokenizer_path, hash_corpus=True, spark=spark)
    assert got.to_dict() == black_box
    got = tms.radioactivity(
        str(corpus), key, scheme, reference=str(reference), tokenizer=tokenizer_path, hash_corpus=True, spark=spark
    )
    assert got.to_dict() == filtered
    assert filtered["counts"]["skipped_by_filter"] > 0
    assert got.outcome.log10_p == filtered["outcome"]["log10_p"]


def test_a_bad_reference_line_is_the_clis_error(spark, cli, setup, tokenizer_path, tmp_path):
    scheme = "kgw:gamma=0.25,delta=2,context=lefthash:1"
    key, key_path, corpus, lines = setup(scheme, seed=6, plain=2)
    reference = tmp_path / "ours.jsonl"
    reference.write_text("\n".join(lines[:2] + ["{\"ids\": 3}"] + lines[2:4] + ["oops"]) + "\n")
    args = ["radioactivity", "--key", str(key_path), "--scheme", scheme, "--tokenizer", str(tokenizer_path),
            "--reference", str(reference), str(corpus)]
    r = subprocess.run([cli, "--quiet", *args], capture_output=True, text=True)
    assert r.returncode not in (0, 1)
    with pytest.raises(tm.TracemarkError, match="line 3: `ids` must be an array of token ids") as e:
        tms.radioactivity(str(corpus), key, scheme, reference=str(reference), tokenizer=tokenizer_path, spark=spark)
    assert str(e.value) in r.stderr


def test_bad_arguments(spark, tokenizer_path):
    key = tm.Key.generate()
    with pytest.raises(tm.InvalidParameterError, match="`line` column"):
        tms.scan(spark.createDataFrame([("x",)], "value string"), key, "kgw:gamma=0.25,delta=2,context=lefthash:1",
                 tokenizer=tokenizer_path, spark=spark)
    with pytest.raises(tm.InvalidParameterError, match="vocab_size"):
        tms.scan("nowhere.jsonl", key, "kgw:gamma=0.25,delta=2,context=lefthash:1", spark=spark)
    with pytest.raises(tm.InvalidParameterError):
        tms.scan("nowhere.jsonl", key, "kgw:gamma=0.25,delta=2,context=lefthash:1", vocab_size=10, dedup="maybe",
                 spark=spark)


def test_native_pieces_match_scan_corpus(tmp_path, tokenizer_path):
    """Without Spark: the native batch functions over shuffled batches give scan_corpus's results."""
    from tracemark._native import corpus_test, observe_lines, sum_in_order, total_is_order_free

    scheme = "gumbel:temperature=1,context=lefthash:2"
    key = tm.Key.generate()
    lines = corpus_lines(tm.Scheme(key, scheme, VOCAB), 11)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    tok = tm.Tokenizer.from_file(tokenizer_path)
    det = tm.Detector(key, scheme, VOCAB)
    docs, summary = tm.scan_corpus(det, corpus, tokenizer=tok)
    cols = observe_lines(det, np.arange(1, len(lines) + 1), [l.encode() for l in lines], tokenizer=tok)
    assert [json.loads(j) for j in cols["json"]] == docs
    counted = ("prompt", "seen", "skipped_duplicate", "skipped_short_context", "skipped_by_filter")
    kept, seen_pairs, c = [], set(), {k: 0 for k in counted}
    off = cols["obs_offsets"]
    for i in range(len(cols["line"])):
        if not cols["enters"][i]:
            continue
        for k in c:
            c[k] += int(cols[k][i])
        for j in range(off[i], off[i + 1]):
            pair = (int(cols["seed"][j]), int(cols["token"][j]))
            if pair in seen_pairs:
                c["skipped_duplicate"] += 1
            else:
                seen_pairs.add(pair)
                kept.append(cols["score"][j])
    assert not total_is_order_free(det)
    total = sum_in_order(sum_in_order(-0.0, np.array(kept[:7])), np.array(kept[7:]))
    report = corpus_test(det, scored=len(kept), total=total, tokenizer=tok, input_sha256=summary["corpus_sha256"], **c)
    assert report.to_dict() == summary["aggregate"]


def test_observe_arrow_is_observe_lines_on_the_buffers(tokenizer_path):
    """The executors' call on an Arrow batch's buffers gives observe_lines's columns: a sliced
    batch, null and blank lines, a bad line, string and large_binary columns; with buckets,
    pair_buckets's blobs of the same observations."""
    import pyarrow as pa

    from tracemark._native import observe_arrow, observe_lines, pair_buckets

    scheme = "kgw:gamma=0.25,delta=2,context=lefthash:1"
    key = tm.Key.generate()
    lines = corpus_lines(tm.Scheme(key, scheme, VOCAB), 5)
    values = [l.encode() for l in lines] + [None, b"", b"{not json", "{\"text\": \"caf\u00e9 \u00fcber\"}".encode()]
    tok = tm.Tokenizer.from_file(tokenizer_path)
    det = tm.Detector(key, scheme, VOCAB)
    whole = pa.array([b"padding"] + values + [b"more"], pa.binary())
    column = whole.slice(1, len(values))  # offset 1: the buffers start before the batch
    numbers = np.arange(3, 3 + len(values), dtype=np.int64)
    expected = observe_lines(det, numbers, values, tokenizer=tok)
    for col in (column, column.cast(pa.large_binary()), pa.array([None if v is None else v.decode() for v in values])):
        offsets, data, valid = tms._arrow_lines(col)
        got = observe_arrow(det, numbers, offsets, data, valid=valid, tokenizer=tok)
        for name, kind in [("id", pa.string()), ("verdict", pa.string()), ("error", pa.string()),
                           ("json", pa.string()), ("log10_p", pa.float64())]:
            assert tms._arrow_column(got[name], kind).to_pylist() == list(expected[name]), name
        for name in ("line", "tokens", "scored", "canonical_changes", "enters", "prompt", "seen", "skipped_duplicate",
                     "skipped_short_context", "skipped_by_filter", "n_observations", "obs_offsets", "position",
                     "context_key", "seed", "token", "score"):
            assert np.array_equal(got[name], expected[name]), name
    assert any(e is not None for e in expected["error"]) and len(expected["line"]) < len(values)  # blank lines give none
    offsets, data, valid = tms._arrow_lines(column)
    packed = observe_arrow(det, numbers, offsets, data, valid=valid, tokenizer=tok, buckets=5)
    blobs = pair_buckets(np.asarray(expected["seed"]), np.asarray(expected["token"]), np.asarray(expected["score"]), 5)
    assert packed["bucket"].tolist() == [b for b in range(5) if blobs[b]]
    assert tms._arrow_column(packed["pairs"], pa.binary()).to_pylist() == [b for b in blobs if b]
    assert "seed" not in packed
    with pytest.raises(tm.InvalidParameterError):
        observe_arrow(det, numbers[:-1], offsets, data)
    with pytest.raises(tm.InvalidParameterError):
        observe_arrow(det, numbers, offsets + 10**6, data)


def test_executors_refuse_another_version_and_never_print_the_key():
    class Broadcast:
        value = tm.Key.generate().secret_bytes()

    setup = tms._Setup(key=Broadcast(), scheme="kgw:gamma=0.25,delta=2,context=lefthash:1", vocab_size=10,
                       dedup="pair", alpha=1e-6, min_scored=10, canonicalize=True, tokenizer=None, tokenizer_sha256=None, nonce="n",
                       version=("0.0.0", "v0"))
    assert Broadcast.value.hex() not in repr(setup) and "Broadcast" not in repr(setup)
    with pytest.raises(tm.InvalidParameterError, match="install the driver's wheel on the executors"):
        setup.build()


def test_a_tokenizer_is_loaded_once_per_process_for_every_scan_that_uses_it():
    loads = []

    def load(name):
        loads.append(name)
        return name

    assert tms._tokenizer("a" * 64, lambda: load("first")) == "first"
    assert tms._tokenizer("a" * 64, lambda: load("again")) == "first"
    assert tms._tokenizer("b" * 64, lambda: load("other")) == "other"
    assert loads == ["first", "other"] and list(tms._TOKENIZERS) == ["b" * 64]  # only the last is kept
