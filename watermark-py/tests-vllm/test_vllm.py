"""tracemark.vllm through vLLM's own classes, on CPU: the loaders of both
runners, admission checks, V1's BatchUpdate traffic (add, remove, condense,
swap, async placeholders) and V2's slots and LogitsContext. Every watermarked
row is compared with the Rust core's output for the same history and key,
and the golden vectors are replayed through both processors.

vLLM's engine needs CUDA (its PyPI build links libcudart); these tests use
its real classes and loaders, not its engine."""

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from vllm import SamplingParams
from vllm.exceptions import VLLMValidationError
from vllm.v1.sample.logits_processor import (
    BatchUpdateBuilder,
    MoveDirectionality,
    build_logitsprocs,
    validate_logits_processors_parameters,
)
from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcRequestState
from vllm.v1.worker.gpu.sample.logits_processor.loader import (
    build_custom_logits_processors,
    build_custom_logits_processors_params_validator,
)

import tracemark as tm
from tracemark.vllm import SPEC_DECODE_REFUSED, TracemarkLogitsProcessor, TracemarkLogitsProcessorV2
from conftest import vectors
from distributions import assert_same_distribution

V = 1000
V1_FQCN = "tracemark.vllm:TracemarkLogitsProcessor"
V2_FQCN = "tracemark.vllm:TracemarkLogitsProcessorV2"
SCHEMES = [
    "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw:gamma=0.25,delta=2,context=selfhash:3",
    "gumbel:temperature=1,context=lefthash:2",
    "tournament:layers=16,top_k=20,temperature=1,context=lefthash:2",
]


def vllm_config(spec=None, max_num_seqs=8):
    return NS(
        speculative_config=spec,
        additional_config={},
        scheduler_config=NS(max_num_seqs=max_num_seqs),
        model_config=NS(get_vocab_size=lambda: V, logits_processors=None),
    )


class Core:
    """What the Rust core does to each request's rows: the expected output."""

    def __init__(self, master, scheme):
        self.master = master
        self.config = tm.SchemeConfig(scheme)
        self.skip = self.config.contract.skip_repeated
        self.memories = {}

    def expect(self, rid, label, history, row):
        key = self.master if label is None else self.master.derive(label)
        s = self.config.build(key, V)
        memory = self.memories.setdefault(rid, tm.SeenContexts()) if self.skip else None
        out = row.copy()
        s.process(history, out, memory)
        return out


def same_row(got, want, scheme):
    if scheme.startswith("tournament"):
        assert_same_distribution(got, want)
    else:
        assert got.view(np.uint32).tolist() == want.view(np.uint32).tolist()


def test_both_loaders_take_their_class_and_refuse_the_other(server_key):
    server_key(SCHEMES[0])
    cfg = vllm_config()
    procs = build_logitsprocs(cfg, torch.device("cpu"), False, False, [V1_FQCN])
    assert any(isinstance(p, TracemarkLogitsProcessor) for p in procs.all)
    assert [p for p in procs.non_argmax_invariant if isinstance(p, TracemarkLogitsProcessor)]
    with pytest.raises((ValueError, RuntimeError)):
        build_logitsprocs(cfg, torch.device("cpu"), False, False, [V2_FQCN])
    req_states = NS(
        max_num_reqs=4, vocab_size=V, device=torch.device("cpu"),
        all_token_ids=NS(gpu=torch.zeros(4, 64, dtype=torch.int32)),
        prompt_len=NS(np=np.zeros(4, np.int32)), prefill_len=NS(np=np.zeros(4, np.int32)),
        total_len=NS(gpu=torch.zeros(4, dtype=torch.int32)),
    )
    v2 = build_custom_logits_processors(cfg, req_states, False, [V2_FQCN])
    assert len(v2) == 1 and isinstance(v2[0], TracemarkLogitsProcessorV2)
    with pytest.raises(ValueError, match="not a subclass"):
        build_custom_logits_processors_params_validator((V1_FQCN,))


def test_admission_checks_the_request_arguments_without_keys():
    bad = SamplingParams(extra_args={"tracemark_label": "two words"})
    # vLLM turns the processors' ValueError into its own validation error (HTTP 400).
    with pytest.raises(VLLMValidationError, match="tracemark_label"):
        validate_logits_processors_parameters([V1_FQCN], bad)
    validator = build_custom_logits_processors_params_validator((V2_FQCN,))
    with pytest.raises(VLLMValidationError, match="tracemark_label"):
        validator(bad)
    with pytest.raises(VLLMValidationError, match='"on" or "off"'):
        validator(SamplingParams(extra_args={"tracemark": "maybe"}))
    validator(SamplingParams(extra_args={"tracemark_label": "account/42"}))
    validator(SamplingParams(extra_args={"tracemark": {"label": "cohort/3", "enabled": True}}))
    validator(SamplingParams())


def test_speculative_decoding_is_refused(server_key):
    server_key(SCHEMES[0])
    with pytest.raises(ValueError, match="speculative"):
        TracemarkLogitsProcessor(vllm_config(spec=NS(num_speculative_tokens=3)), torch.device("cpu"), False)
    with pytest.raises(ValueError, match="speculative"):
        build_logitsprocs(vllm_config(spec=NS()), torch.device("cpu"), False, False, [V1_FQCN])
    states = v2_states()
    with pytest.raises(ValueError, match="speculative"):
        TracemarkLogitsProcessorV2(vllm_config(spec=NS()), states)
    # Draft-expanded rows (more logits rows than requests) are refused too.
    lp = TracemarkLogitsProcessorV2(vllm_config(), states)
    lp.add_request(0, SamplingParams())
    ctx = context([0], [1], expanded=[0, 0])
    with pytest.raises(ValueError, match=SPEC_DECODE_REFUSED[:40]):
        lp.apply(torch.zeros(2, V), ctx)


def test_a_server_without_keys_does_not_start(monkeypatch):
    monkeypatch.delenv("TRACEMARK_KEY_FILE", raising=False)
    monkeypatch.setenv("TRACEMARK_SCHEME", SCHEMES[0])
    with pytest.raises(ValueError, match="TRACEMARK_KEY_FILE"):
        TracemarkLogitsProcessor(vllm_config(), torch.device("cpu"), False)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_v1_follows_the_batch_and_matches_the_core(scheme, server_key, rng_seed=7):
    rng = np.random.default_rng(rng_seed)
    master = server_key(scheme)
    core = Core(master, scheme)
    lp = TracemarkLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    b = BatchUpdateBuilder()
    # Requests: id -> (label or None, watermarked?, prompt, live output list)
    reqs = {}
    slots = []  # slot -> request id (the persistent batch)

    def add(rid, args, label, on, slot=None):
        prompt = rng.integers(0, V, size=int(rng.integers(1, 6))).tolist()
        out = []
        reqs[rid] = (label, on, prompt, out)
        params = SamplingParams(extra_args=args)
        if slot is None:
            slot = len(slots)
            slots.append(rid)
        else:
            slots[slot] = rid
        b.added.append((slot, params, prompt, out))

    def step():
        lp.update_state(b.get_and_reset(len(slots)))
        logits = rng.normal(0, 2, size=(len(slots), V)).astype(np.float32)
        got = lp.apply(torch.from_numpy(logits.copy())).numpy()
        for slot, rid in enumerate(slots):
            label, on, prompt, out = reqs[rid]
            if on:
                want = core.expect(rid, label, prompt + out, logits[slot])
                same_row(got[slot], want, scheme)
            else:
                assert got[slot].view(np.uint32).tolist() == logits[slot].view(np.uint32).tolist()
            out.append(int(np.argmax(got[slot])))

    add("a", {"tracemark_label": "account/42"}, "account/42", True)
    add("b", None, None, True)
    add("c", {"tracemark": "off"}, None, False)
    add("d", {"tracemark": {"label": "cohort/7"}}, "cohort/7", True)
    for _ in range(3):
        step()
    # Remove "a" (slot 0) and condense: the last request moves into the hole.
    b.removed_append(0)
    assert b.pop_removed() == 0
    last = len(slots) - 1
    b.moved.append((last, 0, MoveDirectionality.UNIDIRECTIONAL))
    slots[0] = slots.pop()
    step()
    # Swap two requests.
    b.moved.append((0, 1, MoveDirectionality.SWAP))
    slots[0], slots[1] = slots[1], slots[0]
    step()
    # A new request takes a fresh slot; then steps with the batch unchanged (None).
    add("e", {"tracemark_label": "account/9"}, "account/9", True)
    step()
    lp.update_state(None)
    step()
    # A removed slot reused by an added request in the same update.
    b.removed_append(1)
    slot = b.pop_removed()
    add("f", None, None, True, slot=slot)
    step()
    step()


def test_v1_async_placeholders(server_key):
    master = server_key(SCHEMES[0])
    core = Core(master, SCHEMES[0])
    lp = TracemarkLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    b = BatchUpdateBuilder()
    out = []
    b.added.append((0, SamplingParams(), [5, 6], out))
    lp.update_state(b.get_and_reset(1))
    lp.apply(torch.zeros(1, V))
    # Async scheduling appends a placeholder; vLLM replaces it before apply.
    out.append(-1)
    lp.update_state(None)
    out[-1] = 17
    logits = np.zeros((1, V), np.float32)
    got = lp.apply(torch.from_numpy(logits.copy())).numpy()
    same_row(got[0], core.expect("x", None, [5, 6, 17], logits[0]), SCHEMES[0])
    # A placeholder still there at apply: the row is left alone and counted.
    out.append(-1)
    got = lp.apply(torch.from_numpy(logits.copy())).numpy()
    assert not got.any() and lp._w.placeholder_rows == 1


def v2_states(max_reqs=8, max_len=64):
    return LogitsProcRequestState(
        device=torch.device("cpu"),
        max_num_reqs=max_reqs,
        vocab_size=V,
        all_token_ids=NS(gpu=torch.zeros(max_reqs, max_len, dtype=torch.int32)),
        prompt_len=NS(np=np.zeros(max_reqs, np.int32), gpu=torch.zeros(max_reqs, dtype=torch.int32)),
        prefill_len=NS(np=np.zeros(max_reqs, np.int32), gpu=torch.zeros(max_reqs, dtype=torch.int32)),
        total_len=NS(gpu=torch.zeros(max_reqs, dtype=torch.int32)),
    )


def context(slots, seq_lens, expanded=None):
    expanded = slots if expanded is None else expanded
    return LogitsContext(
        expanded_idx_mapping=torch.tensor(expanded),
        idx_mapping=torch.tensor(slots),
        idx_mapping_np=np.array(slots),
        expanded_local_pos=torch.zeros(len(expanded), dtype=torch.int32),
        input_ids=torch.zeros(len(expanded), dtype=torch.int64),
        pos=torch.tensor(seq_lens) - 1,
        seq_lens_upper_bound_np=np.array(seq_lens),
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_v2_follows_slots_and_rows_and_matches_the_core(scheme, server_key):
    rng = np.random.default_rng(11)
    master = server_key(scheme)
    core = Core(master, scheme)
    states = v2_states()
    lp = TracemarkLogitsProcessorV2(vllm_config(), states)
    reqs = {}  # slot -> (rid, label, on, history)

    def add(slot, rid, args, label, on, prompt_len=None):
        prompt = rng.integers(0, V, size=prompt_len or int(rng.integers(1, 6))).tolist()
        states.all_token_ids.gpu[slot, : len(prompt)] = torch.tensor(prompt)
        states.prefill_len.np[slot] = len(prompt)
        reqs[slot] = (rid, label, on, list(prompt))
        assert lp.add_request(slot, SamplingParams(extra_args=args)) == on

    def step(order):
        seq_lens = [len(reqs[s][3]) for s in order]
        logits = rng.normal(0, 2, size=(len(order), V)).astype(np.float32)
        got = lp.apply(torch.from_numpy(logits.copy()), context(order, seq_lens)).numpy()
        for row, slot in enumerate(order):
            rid, label, on, history = reqs[slot]
            if on:
                same_row(got[row], core.expect(rid, label, history, logits[row]), scheme)
            else:
                assert got[row].view(np.uint32).tolist() == logits[row].view(np.uint32).tolist()
            token = int(np.argmax(got[row]))
            states.all_token_ids.gpu[slot, len(history)] = token
            history.append(token)

    add(3, "a", {"tracemark_label": "account/42"}, "account/42", True)
    add(5, "b", None, None, True)
    add(0, "c", {"tracemark": "off"}, None, False)
    step([3, 5, 0])
    step([0, 3, 5])  # rows reordered
    step([5])  # a batch of one
    # Slot 3 recycled for another request: nothing of the old one may survive.
    core.memories.pop("a", None)
    add(3, "d", {"tracemark_label": "cohort/1"}, "cohort/1", True)
    step([3, 5, 0])
    step([5, 3])


def test_v2_leaves_partial_prefill_rows_alone(server_key):
    server_key(SCHEMES[2])
    states = v2_states()
    lp = TracemarkLogitsProcessorV2(vllm_config(), states)
    states.all_token_ids.gpu[1, :10] = torch.arange(10)
    states.prefill_len.np[1] = 10
    lp.add_request(1, SamplingParams())
    logits = torch.zeros(1, V)
    # A chunk that ends at token 6 of a 10-token prompt: the sample is thrown away.
    assert torch.equal(lp.apply(logits.clone(), context([1], [6])), logits)
    assert torch.isfinite(lp.apply(logits.clone(), context([1], [10]))).sum() == 1


ROW_CASES = [c for c in vectors("kgw") if "row_in_bits" in c]


def test_there_are_golden_rows():
    assert len(ROW_CASES) >= 10


@pytest.mark.parametrize("case", ROW_CASES, ids=lambda c: f"{c['vocab']}-{c['context']}")
def test_golden_kgw_rows_through_both_runners(case, server_key):
    spec = f"kgw:gamma={case['gamma']},delta={case['delta']},context={case['context']}"
    server_key(spec, key=tm.Key.from_bytes(bytes.fromhex(case["key"])))
    row = torch.from_numpy(np.array(case["row_in_bits"], dtype=np.uint32).view(np.float32).copy())[None, :]
    lp = TracemarkLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    b = BatchUpdateBuilder()
    b.added.append((0, SamplingParams(), list(case["history"]), []))
    lp.update_state(b.get_and_reset(1))
    got = lp.apply(row.clone())[0].numpy()
    assert got.view(np.uint32).tolist() == case["row_out_bits"]
    states = v2_states(max_len=max(len(case["history"]), 1) + 1)
    states.all_token_ids.gpu[0, : len(case["history"])] = torch.tensor(case["history"], dtype=torch.int32)
    lp2 = TracemarkLogitsProcessorV2(vllm_config(), states)
    lp2.add_request(0, SamplingParams())
    got2 = lp2.apply(row.clone(), context([0], [len(case["history"])]))[0].numpy()
    assert got2.view(np.uint32).tolist() == case["row_out_bits"]


@pytest.mark.parametrize("case", vectors("gumbel"), ids=lambda c: c["context"])
def test_golden_gumbel_selection_through_both_runners(case, server_key):
    server_key(f"gumbel:temperature={case['temperature']},context={case['context']}",
               key=tm.Key.from_bytes(bytes.fromhex(case["key"])))
    logits = torch.tensor([[-math.inf if x is None else x for x in case["logits"]]], dtype=torch.float32)
    lp = TracemarkLogitsProcessor(vllm_config(), torch.device("cpu"), False)
    b = BatchUpdateBuilder()
    b.added.append((0, SamplingParams(), list(case["history"]), []))
    lp.update_state(b.get_and_reset(1))
    assert int(lp.apply(logits.clone()).argmax()) == case["selected"]
    states = v2_states(max_len=len(case["history"]) + 1)
    if case["history"]:
        states.all_token_ids.gpu[0, : len(case["history"])] = torch.tensor(case["history"], dtype=torch.int32)
    lp2 = TracemarkLogitsProcessorV2(vllm_config(), states)
    lp2.add_request(0, SamplingParams())
    assert int(lp2.apply(logits.clone(), context([0], [len(case["history"])])).argmax()) == case["selected"]
