"""The golden vectors of the semantic partition (SPEC §15.3),
testdata/semantic/v1.json and, for chained regions (chain=previous),
v1-chain.json, against the independent Python reference that wrote them
(gen_semantic.py); the Rust core reads the same files
(watermark-core/tests/semantic.rs). The binding-level check of the same
vectors comes with the bindings of the semantic scheme."""

import hashlib
import importlib.util
import json
import math
import struct
import sys

from conftest import REPO

HERE = REPO / "testdata" / "semantic"


def reference():
    sys.path.insert(0, str(REPO / "testdata"))
    spec = importlib.util.spec_from_file_location("gen_semantic", HERE / "gen_semantic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_mean_file_and_hash():
    m = json.loads((HERE / "reference-mean-v1.json").read_text())
    values = m["values"]
    assert m["dim"] == len(values) == 384
    packed = b"".join(struct.pack("<f", v) for v in values)
    # Every value is written exactly (an f32 value as a decimal).
    assert all(struct.unpack("<f", struct.pack("<f", v))[0] == v for v in values)
    assert hashlib.sha256(packed).hexdigest() == m["sha256"]
    assert math.isclose(math.sqrt(sum(v * v for v in values)), m["norm"], rel_tol=1e-6)
    assert json.loads((HERE / "v1.json").read_text())["reference_mean_sha256"] == m["sha256"]
    # The Rust constant holds the same hash.
    assert f'"{m["sha256"]}"' in (REPO / "watermark-core" / "src" / "semantic_mean.rs").read_text()


def test_the_golden_file_is_what_the_reference_writes():
    ref = reference()
    embs, cases = ref.cases()
    golden = json.loads((HERE / "v1.json").read_text())
    assert golden["spec"] == "tracemark/v1"
    assert json.loads(json.dumps(embs)) == golden["embeddings"]
    assert json.loads(json.dumps(cases)) == golden["cases"]
    assert len(cases) == 9 and sum(len(c["projections"]) for c in cases) == 81


def test_reference_properties():
    ref = reference()
    mean = ref.reference_mean()
    cfg = ref.parse_config("semantic:gamma=0.25,planes=6")
    assert ref.canonical(cfg) == "semantic:gamma=0.25,planes=6,margin=0.002,min_words=5"
    s = ref.Semantic(bytes(range(32)), cfg, mean)
    # The mean projects to 0 on every plane: region 0, margin 0.
    assert s.project(mean)[1:] == (0, 0.0)
    # Integer normals in [-131070, 131070], about centred.
    coords = [c for n in s.normals for c in n]
    assert all(abs(c) <= 131070 for c in coords)
    sd = math.sqrt(4 * (65536 ** 2 - 1) / 12)
    assert abs(sum(coords) / len(coords)) < 4 * sd / math.sqrt(len(coords))
    # Planes nest: the first 3 normals of planes=6 are those of planes=3.
    s3 = ref.Semantic(bytes(range(32)), ref.parse_config("semantic:gamma=0.25,planes=3"), mean)
    assert s3.normals == s.normals[:3]
    assert ref.word_count(" a\u3000b\tc ") == 3


def test_the_chained_golden_file_is_what_the_reference_writes():
    ref = reference()
    golden = json.loads((HERE / "v1-chain.json").read_text())
    assert golden["spec"] == "tracemark/v1"
    assert golden["chain_start"] == 0xFFFFFFFF and golden["tag_chain"] == 0x07000000
    cases = ref.chain_cases()
    assert json.loads(json.dumps(cases)) == golden["cases"]
    assert len(cases) == 9 and sum(len(c["sentences"]) for c in cases) == 9 * 14


def test_chained_reference_properties():
    ref = reference()
    mean = ref.reference_mean()
    chained = ref.Semantic(bytes(range(32)), ref.parse_config("semantic:gamma=0.25,planes=6,chain=previous"), mean)
    plain = ref.Semantic(bytes(range(32)), ref.parse_config("semantic:gamma=0.25,planes=6"), mean)
    assert ref.canonical(chained.cfg) == "semantic:gamma=0.25,planes=6,margin=0.002,min_words=5,chain=previous"
    assert ref.canonical(ref.parse_config("semantic:gamma=0.25,planes=6,chain=none")) == ref.canonical(plain.cfg)
    # Same normals; chain=none ignores the previous region.
    assert chained.normals == plain.normals
    assert all(plain.value_after(p, r) == plain.values[r] for p in (None, 0, 63) for r in range(64))
    # Chained values: PRF(TAG_CHAIN(d); previous or 0xffffffff, region) & 0xffff.
    k0, k1 = chained.k0, chained.k1
    assert chained.value_after(None, 5) == ref.siphash24(k0, k1, ref.words(0x07000006, 0xFFFFFFFF, 5)) & 0xFFFF
    assert chained.value_after(9, 5) == ref.siphash24(k0, k1, ref.words(0x07000006, 9, 5)) & 0xFFFF
    # Green pairs over the 65 x 64 (start or previous, region): Binomial(4160, 1/4),
    # mean 1040, sd 27.9; within 5 sd.
    green = sum(chained.green_after(p, r) for p in [None, *range(64)] for r in range(64))
    assert abs(green - 1040) <= 5 * 28


def test_the_binding_reads_the_chained_vectors():
    """tracemark.Semantic (the Rust core through the bindings) on v1-chain.json:
    green bits of the listed pairs, and the chained text's regions, green bits
    and acceptance, sentence by sentence."""
    import pytest
    import tracemark as tm

    if not hasattr(getattr(tm, "Semantic", None), "is_green_after"):
        pytest.skip("this build of the bindings has no tracemark.Semantic.is_green_after")
    embs = json.loads((HERE / "v1.json").read_text())["embeddings"]
    golden = json.loads((HERE / "v1-chain.json").read_text())
    checked = 0
    for case in golden["cases"]:
        s = tm.Semantic(tm.Key.from_bytes(bytes.fromhex(case["key"])), case["config"])
        assert s.config == case["canonical"] and s.chain == "previous"
        for p in case["pairs"]:
            assert s.is_green_after(p["previous"], p["region"]) == p["green"]
            checked += 1
        for t in case["sentences"]:
            e = embs[t["embedding"]]
            assert s.region(e) == t["region"]
            assert s.is_green_after(t["previous"], t["region"]) == t["green"]
            assert s.accepts_after(t["previous"], e) == t["accepted"]
            checked += 1
    assert checked == 600 + 9 * 14
