"""tracemark.sglang through SGLang's own CustomLogitProcessor: the class
round-trips through to_str/from_str (what a request carries), and each row it
returns is the Rust core's for that request's history and key. SGLang's
server needs CUDA; its processor class does not (installed without its
CUDA pins)."""

import weakref
from array import array

import numpy as np
import pytest
import torch
from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

import tracemark as tm
from tracemark import sglang as tsg
from tracemark.sglang import TracemarkSGLangProcessor
from distributions import assert_same_distribution

V = 1000


class Req:
    """The fields of SGLang's scheduler-side Req that the processor reads."""

    def __init__(self, rid, prompt):
        self.rid = rid
        self.origin_input_ids = array("q", prompt)
        self.output_ids = array("q")


@pytest.fixture
def server(tmp_path, monkeypatch):
    def install(scheme, unlabelled=None):
        key = tm.Key.generate()
        key.save(tmp_path / "master.key")
        monkeypatch.setenv("TRACEMARK_KEY_FILE", str(tmp_path / "master.key"))
        monkeypatch.setenv("TRACEMARK_SCHEME", scheme)
        if unlabelled:
            monkeypatch.setenv("TRACEMARK_UNLABELLED", unlabelled)
        monkeypatch.setattr(tsg._State, "keys", None)
        monkeypatch.setattr(tsg._State, "devices", {})
        monkeypatch.setattr(tsg._State, "memories", tsg.OrderedDict())
        return key

    return install


def test_the_string_a_request_carries_round_trips_to_our_processor():
    assert issubclass(TracemarkSGLangProcessor, CustomLogitProcessor)
    s = TracemarkSGLangProcessor.to_str()
    p = CustomLogitProcessor.from_str(s)
    assert isinstance(p, TracemarkSGLangProcessor)
    # Pickled by reference (the server imports tracemark): a short string naming the class, no key material.
    assert len(s) < 1000


@pytest.mark.parametrize("scheme", [
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "gumbel:temperature=1,context=lefthash:2",
    "tournament:layers=16,top_k=20,temperature=1,context=selfhash:2",
])
def test_rows_match_the_core_per_request(scheme, server):
    rng = np.random.default_rng(5)
    master = server(scheme)
    config = tm.SchemeConfig(scheme)
    proc = CustomLogitProcessor.from_str(TracemarkSGLangProcessor.to_str())
    reqs = [Req("a", [1, 2, 3]), Req("b", [9]), Req("c", [4, 4]), Req("d", [7, 8])]
    params = [{"tracemark_label": "account/42"}, {}, {"tracemark": "off"}, None]
    memories = {r.rid: tm.SeenContexts() for r in reqs}
    for step in range(6):
        logits = rng.normal(0, 2, size=(len(reqs), V)).astype(np.float32)
        plist = [None if p is None else {**p, "__req__": weakref.proxy(r)} for p, r in zip(params, reqs)]
        # SGLang hands a copy of the rows and keeps what is returned.
        got = proc(torch.from_numpy(logits.copy()), plist).numpy()
        for i, (p, r) in enumerate(zip(params, reqs)):
            if p is None or p.get("tracemark") == "off":
                assert got[i].view(np.uint32).tolist() == logits[i].view(np.uint32).tolist()
            else:
                key = master.derive(p["tracemark_label"]) if "tracemark_label" in p else master
                want = logits[i].copy()
                memory = memories[r.rid] if config.contract.skip_repeated else None
                config.build(key, V).process(list(r.origin_input_ids) + list(r.output_ids), want, memory)
                if scheme.startswith("tournament"):
                    assert_same_distribution(got[i], want)
                else:
                    assert got[i].view(np.uint32).tolist() == want.view(np.uint32).tolist()
            r.output_ids.append(int(np.argmax(got[i])))
    assert TracemarkSGLangProcessor.unwatermarked_rows >= 6


def test_a_malformed_label_never_opts_out(server):
    master = server("kgw:gamma=0.25,delta=2,context=lefthash:1")
    proc = TracemarkSGLangProcessor()
    r = Req("x", [3, 4])
    got = proc(torch.zeros(1, V), [{"tracemark_label": "two words", "__req__": weakref.proxy(r)}]).numpy()
    want = np.zeros(V, np.float32)
    tm.Scheme(master, "kgw:gamma=0.25,delta=2,context=lefthash:1", V).process([3, 4], want)
    assert got[0].tolist() == want.tolist()


def test_draft_rows_are_refused(server):
    server("kgw:gamma=0.25,delta=2,context=lefthash:1")
    with pytest.raises(ValueError, match="speculative"):
        TracemarkSGLangProcessor()(torch.zeros(3, V), [{}])
