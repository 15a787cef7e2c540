"""A fine-tuned SmolLM2 student (transformers, torch) exported to GGUF, so that
a real OpenAI-compatible server (llama-cpp-python's) can serve it with
log-probabilities (issue 26, deliverable 3: the suspect behind an endpoint).

The teacher's GGUF gives the layout: every metadata field (architecture,
hyper-parameters, the tokenizer and its chat template) is copied, and every
tensor it holds is written from the student's weights under the same name:
2-D weights as F16, norms as F32, as llama.cpp's own converter writes them.
transformers' GGUF loader un-permutes the query and key projections
(llama.cpp stores them interleaved for its rotary embedding); this writes
them permuted back, as `convert_hf_to_gguf.py` does.

`check(model, tok, path)` compares the exported file's next-token
log-probabilities (llama.cpp) with the student's own (transformers) on a
prompt: the export is only trusted when they agree to F16 precision.

Usage (a round trip of the teacher itself, no fine-tune):
    python lab/python/gguf_export.py --out teacher-f16.gguf
(environment: TRACEMARK_MODEL, the teacher GGUF).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def _permute(w: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's layout of a query or key projection (convert_hf_to_gguf.py's `permute`)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def export(model, teacher_gguf: Path, out: Path) -> Path:
    """Writes `model`'s weights to `out` with `teacher_gguf`'s metadata (the
    tokenizer, its chat template) and the model's own shape: a fine-tune of
    the teacher, or a smaller Llama of the same vocabulary trained from
    scratch (the hyper-parameters are written from its config)."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    reader = gguf.GGUFReader(str(teacher_gguf))
    arch = reader.fields["general.architecture"].contents()
    cfg = model.config
    shape = {
        f"{arch}.block_count": cfg.num_hidden_layers,
        f"{arch}.embedding_length": cfg.hidden_size,
        f"{arch}.feed_forward_length": cfg.intermediate_size,
        f"{arch}.attention.head_count": cfg.num_attention_heads,
        f"{arch}.attention.head_count_kv": cfg.num_key_value_heads,
        f"{arch}.rope.dimension_count": cfg.hidden_size // cfg.num_attention_heads,
        f"{arch}.context_length": cfg.max_position_embeddings,
        f"{arch}.vocab_size": cfg.vocab_size,
        gguf.Keys.General.FILE_TYPE: int(gguf.LlamaFileType.MOSTLY_F16),
    }
    gguf_to_hf = get_gguf_hf_weights_map(model, TensorProcessor())  # GGUF tensor name -> HF parameter name
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(str(out), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, shape.get(field.name, field.contents()), val_type, sub_type=sub_type)
    names = [n for n in gguf_to_hf if gguf_to_hf[n] in state]
    if getattr(cfg, "tie_word_embeddings", False):
        names = [n for n in names if n != "output.weight"]  # llama.cpp reuses token_embd, as the teacher's file does
    for name in sorted(names, key=lambda n: (not n.startswith("token_embd"), n)):
        w = state[gguf_to_hf[name]]
        if ".attn_q." in name:
            w = _permute(w, cfg.num_attention_heads, cfg.num_attention_heads)
        elif ".attn_k." in name:
            w = _permute(w, cfg.num_attention_heads, cfg.num_key_value_heads)
        writer.add_tensor(name, w.astype(np.float16 if w.ndim == 2 else np.float32))
    expected = {t.name for t in reader.tensors} if cfg.num_hidden_layers == reader.fields[f"{arch}.block_count"].contents() else None
    if expected is not None and set(names) != expected:
        raise RuntimeError(f"the student's tensors differ from the teacher's: {sorted(set(names) ^ expected)[:5]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def scratch_student(teacher_config, layers: int = 6, hidden: int = 256, heads: int = 4, kv_heads: int = 2, ffn: int = 768):
    """A small Llama of the teacher's vocabulary and tokenizer, randomly
    initialised: the student that does not share the teacher's base."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=teacher_config.vocab_size, hidden_size=hidden, intermediate_size=ffn,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=2048, rms_norm_eps=teacher_config.rms_norm_eps,
                      rope_theta=getattr(teacher_config, "rope_theta", 100000.0), tie_word_embeddings=True,
                      bos_token_id=teacher_config.bos_token_id, eos_token_id=teacher_config.eos_token_id,
                      pad_token_id=teacher_config.pad_token_id)
    return LlamaForCausalLM(cfg)


def check(model, tok, path: Path, prompt: str = "Explain how photosynthesis works.") -> float:
    """The largest difference between the exported file's next-token
    log-probabilities (llama.cpp) and the student's (transformers), over the
    20 most likely tokens after `prompt`'s chat form."""
    import llama_cpp
    import torch

    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    if hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    ids = list(ids)
    with torch.no_grad():
        ref = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1).numpy()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
    got = logits - np.logaddexp.reduce(logits)
    top = np.argsort(-ref)[:20]
    return float(np.max(np.abs(got[top] - ref[top])))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scratch", action="store_true", help="export an untrained small Llama instead (the from-scratch student's shape)")
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(os.environ["TRACEMARK_MODEL"])
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()
    if a.scratch:
        model = scratch_student(model.config).eval()
    export(model, gguf_path, a.out)
    diff = check(model, tok, a.out)
    print(f"wrote {a.out}; largest log-probability difference over the top 20 tokens: {diff:.4f}")
    sys.stdout.flush()
    os._exit(0 if diff < 0.05 else 1)  # llama-cpp-python's finaliser can fail at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
