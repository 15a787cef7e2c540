"""Signed provenance receipts from Python: the golden vectors (recomputed from
SPEC §12 with hashlib and struct), each failure reported as itself, and the
receipts that tracemark.hf and the llama.cpp server emit with real SmolLM2
answers, checked by the bindings and by `tracemark receipt verify`."""

import hashlib
import json
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import tracemark as tm
from conftest import REPO, required_env, vectors

KGW = "kgw:gamma=0.25,delta=2,context=lefthash:1"
FIELDS = ["format", "text_sha256", "canonical_sha256", "model", "created", "scheme", "key_id", "label",
          "signer", "public_key", "signature"]


def signed_message(r: dict) -> bytes:
    """SPEC §12.3, from its text."""
    parts = ["tracemark/v1/receipt"] + [r[f] or "" for f in FIELDS[:-1]]
    return b"".join(struct.pack(">I", len(p.encode())) + p.encode() for p in parts)


@pytest.mark.parametrize("case", vectors("receipts"), ids=lambda c: c["receipt"]["created"])
def test_golden_vectors(case, tmp_path):
    key = tm.SigningKey.from_seed(bytes.fromhex(case["seed"]))
    assert key.id == case["signer"]
    assert key.verifying_key().public_bytes().hex() == case["public_key"]
    assert case["signer"] == "ed25519:" + hashlib.sha256(bytes.fromhex(case["public_key"])).hexdigest()[:32]
    want = case["receipt"]
    assert list(want) == FIELDS
    text = case["text"]
    assert want["text_sha256"] == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    canonical, _ = tm.canonicalize(text)
    assert want["canonical_sha256"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert signed_message(want).hex() == case["message"]
    # Ed25519 is deterministic: the bindings sign the same receipt, byte for byte.
    ours = tm.sign_receipt(key, text, want["model"], scheme=want["scheme"], key_id=want["key_id"],
                           label=want["label"], created=want["created"])
    assert ours.to_dict() == want and list(ours.to_dict()) == FIELDS
    assert ours.signed_message().hex() == case["message"]
    (tmp_path / "signer.pub").write_text(case["verifying_key_file"])
    trusted = tm.VerifyingKey.load(tmp_path / "signer.pub")
    check = tm.verify_receipt(tm.Receipt.from_json(json.dumps(want)), text, [trusted])
    assert (check.signature, check.text, check.holds) == ("valid", "exact", True)


@pytest.fixture
def signed(key):
    signer = tm.SigningKey.generate()
    text = "The lighthouse keeper read the message twice."
    receipt = tm.sign_receipt(signer, text, "SmolLM2-135M-Instruct", scheme=KGW, key_id=key.id, label="account/alice")
    return signer, text, receipt


def test_a_valid_receipt_verifies(signed):
    signer, text, receipt = signed
    check = tm.verify_receipt(tm.Receipt.from_json(receipt.to_json()), text, [signer.verifying_key()])
    assert (check.signature, check.signer, check.text, check.watermark, check.holds) == (
        "valid", signer.id, "exact", "not_checked", True)
    assert receipt.label == "account/alice" and receipt.scheme == KGW and receipt.model == "SmolLM2-135M-Instruct"
    assert check.to_dict()["signature"] == {"status": "valid", "signer": signer.id}


def test_a_tampered_text_does_not_match(signed):
    signer, text, receipt = signed
    check = tm.verify_receipt(receipt, text.replace("twice", "once"), [signer.verifying_key()])
    assert (check.signature, check.text, check.holds) == ("valid", "mismatch", False)
    # Invisible characters added: only the canonical form matches, and the check says so.
    check = tm.verify_receipt(receipt, text.replace(" ", " \u200b", 2), [signer.verifying_key()])
    assert check.text == "canonical_only"


@pytest.mark.parametrize("field,value", [("model", "gpt-x"), ("label", "account/bob"), ("label", None),
                                         ("created", "2020-01-01T00:00:00Z")])
def test_a_tampered_receipt_has_an_invalid_signature(signed, field, value):
    signer, text, receipt = signed
    d = receipt.to_dict()
    d[field] = value
    check = tm.verify_receipt(tm.Receipt.from_json(json.dumps(d)), text, [signer.verifying_key()])
    assert (check.signature, check.text, check.holds) == ("invalid", "exact", False)


def test_a_wrong_signing_key_is_an_untrusted_signer(signed):
    signer, text, receipt = signed
    other = tm.SigningKey.generate()
    check = tm.verify_receipt(receipt, text, [other.verifying_key()])
    assert (check.signature, check.signer, check.holds) == ("untrusted_signer", signer.id, False)
    forged = tm.sign_receipt(other, text, "SmolLM2-135M-Instruct")
    assert tm.verify_receipt(forged, text, [signer.verifying_key()]).signature == "untrusted_signer"


def test_keys_of_the_other_kind_and_malformed_receipts_are_refused(tmp_path, key, signed):
    key.save(tmp_path / "watermark.key")
    with pytest.raises(tm.InvalidKeyError, match="is a watermark key file .* not a secret receipt signing key file"):
        tm.SigningKey.load(tmp_path / "watermark.key")
    signer = tm.SigningKey.generate()
    signer.save(tmp_path / "signing.key")
    with pytest.raises(tm.InvalidKeyError, match="receipt signing/verifying key file"):
        tm.Key.load(tmp_path / "signing.key")
    with pytest.raises(tm.InvalidKeyError, match="not a public receipt verifying key file"):
        tm.VerifyingKey.load(tmp_path / "signing.key")
    with pytest.raises(tm.KeyFileExistsError):
        signer.save(tmp_path / "signing.key")
    assert (tmp_path / "signing.key").stat().st_mode & 0o777 == 0o600
    assert signer.id in repr(signer) and signer.secret_bytes().hex() not in repr(signer)
    with pytest.raises(tm.MalformedReceiptError):
        tm.Receipt.from_json('{"format": "tracemark-receipt-v1"}')
    d = signed[2].to_dict()
    d["key_id"] = None  # scheme without key id
    with pytest.raises(tm.MalformedReceiptError, match="both or neither"):
        tm.Receipt.from_json(json.dumps(d))
    with pytest.raises(tm.MalformedReceiptError):
        tm.sign_receipt(signer, "x", "m", created="yesterday")
    with pytest.raises(tm.InvalidParameterError):
        tm.sign_receipt(signer, "x", "m", scheme=KGW)


# --- the integrations, with the real model ---------------------------------------------------------


@pytest.fixture(scope="module")
def gguf():
    return Path(required_env("TRACEMARK_MODEL"))


@pytest.fixture(scope="module")
def cli():
    return required_env("TRACEMARK_CLI")


@pytest.fixture(scope="module")
def tokenizer_json(gguf, tmp_path_factory):
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("smollm2-tokenizer")
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out / "tokenizer.json"


def cli_verify(cli, tmp_path, receipt: dict, text: str, trusted: tm.SigningKey, master_path, tokenizer_json):
    (tmp_path / "r.json").write_text(json.dumps(receipt))
    (tmp_path / "t.txt").write_text(text)
    pub = tmp_path / f"{trusted.id[8:16]}.pub"
    if not pub.exists():
        trusted.verifying_key().save(pub)
    r = subprocess.run([cli, "receipt", "verify", "--receipt", str(tmp_path / "r.json"), "--text", str(tmp_path / "t.txt"),
                        "--trust", str(pub), "--key", str(master_path), "--tokenizer", str(tokenizer_json), "--json"],
                       capture_output=True, text=True)
    return r.returncode, json.loads(r.stdout) if r.stdout else r.stderr


def test_hf_generate_text_emits_a_receipt(gguf, cli, tokenizer_json, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tracemark.hf import TracemarkLogitsProcessor, generate_text

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Fixed keys and seeds: the answer (and so its length and verdict) is the same on every run.
    master = tm.Key.from_bytes(bytes(range(1, 33)))
    master.save(tmp_path / "master.key")
    alice = master.derive("account/alice")
    signer = tm.SigningKey.generate()
    processor = TracemarkLogitsProcessor(alice, KGW, model.config.vocab_size)
    torch.manual_seed(3)
    out = generate_text(model, tokenizer, processor, "Describe a walk through a busy city market.", signer=signer,
                        model_name="SmolLM2-135M-Instruct", label="account/alice",
                        max_new_tokens=120, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    assert len(out.text.split()) > 20 and out.receipt is not None, out.text
    r = out.receipt
    assert (r.model, r.scheme, r.key_id, r.label) == ("SmolLM2-135M-Instruct", KGW, alice.id, "account/alice")
    check = tm.verify_receipt(r, out.text, [signer.verifying_key()], key=master,
                              tokenizer=tm.Tokenizer.from_file(tokenizer_json))
    assert (check.signature, check.text, check.watermark) == ("valid", "exact", "detected"), check.to_dict()
    # The CLI agrees, and a tampered answer is caught.
    code, report = cli_verify(cli, tmp_path, r.to_dict(), out.text, signer, tmp_path / "master.key", tokenizer_json)
    assert code == 0 and report["holds"], report
    code, report = cli_verify(cli, tmp_path, r.to_dict(), out.text + " And then I left.", signer,
                              tmp_path / "master.key", tokenizer_json)
    assert code == 6 and report["check"]["text"]["status"] == "mismatch", report
    # No signer, no receipt.
    assert generate_text(model, tokenizer, processor, "Hi", max_new_tokens=4).receipt is None


def post(url: str, api_key: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read())


def test_llama_cpp_server_attaches_a_receipt_to_each_answer(gguf, cli, tokenizer_json, tmp_path):
    import uvicorn
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from test_llama_cpp import free_port
    from tracemark.llama_cpp import create_app, hash_api_key
    from tracemark.serving import ServerKeys

    # Fixed keys and seeds: the answers (and so their verdicts) are the same on every run.
    master = tm.Key.from_bytes(bytes(range(2, 34)))
    master.save(tmp_path / "master.key")
    signer = tm.SigningKey.generate()
    accounts = {hash_api_key("sk-alice"): "account/alice", hash_api_key("sk-bob"): "account/bob"}
    port = free_port()
    app = create_app(
        ServerKeys(master, KGW), accounts, ServerSettings(host="127.0.0.1", port=port),
        [ModelSettings(model=str(gguf), model_alias="smollm2", n_ctx=1024, n_threads=2, n_threads_batch=2, verbose=False)],
        signer=signer,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    sampling = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "seed": 7}
    try:
        base = f"http://127.0.0.1:{port}/v1"
        chat = post(f"{base}/chat/completions", "sk-alice", {
            "model": "smollm2", "max_tokens": 200, **sampling,
            "messages": [{"role": "user", "content": "What are the main causes of the seasons on Earth?"}]})
        plain = post(f"{base}/completions", "sk-bob", {
            "model": "smollm2", "prompt": "Once upon a time", "max_tokens": 150, **sampling})
    finally:
        server.should_exit = True
        thread.join(30)
    answers = [("account/alice", chat["choices"][0]["message"]["content"], chat),
               ("account/bob", plain["choices"][0]["text"], plain)]
    tokenizer = tm.Tokenizer.from_file(tokenizer_json)
    for label, text, body in answers:
        assert "tracemark_receipt" in body, body
        receipt = tm.Receipt.from_json(json.dumps(body["tracemark_receipt"]))
        assert (receipt.label, receipt.key_id, receipt.scheme, receipt.model) == (
            label, master.derive(label).id, KGW, "smollm2")
        check = tm.verify_receipt(receipt, text, [signer.verifying_key()], key=master, tokenizer=tokenizer)
        assert (check.signature, check.text, check.watermark) == ("valid", "exact", "detected"), (check.to_dict(), text)
        code, report = cli_verify(cli, tmp_path, body["tracemark_receipt"], text, signer, tmp_path / "master.key",
                                  tokenizer_json)
        assert code == 0 and report["holds"], report
    # A receipt for Alice's answer does not cover Bob's.
    alice = tm.Receipt.from_json(json.dumps(chat["tracemark_receipt"]))
    assert tm.verify_receipt(alice, answers[1][1], [signer.verifying_key()]).text == "mismatch"
