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
    """Writes `model`'s weights to `out` in the layout of `teacher_gguf`."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    reader = gguf.GGUFReader(str(teacher_gguf))
    arch = reader.fields["general.architecture"].contents()
    gguf_to_hf = get_gguf_hf_weights_map(model, TensorProcessor())  # GGUF tensor name -> HF parameter name
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    writer = gguf.GGUFWriter(str(out), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_key_value(field.name, value, val_type, sub_type=sub_type)
    written = 0
    for t in reader.tensors:
        key = gguf_to_hf.get(t.name)
        if key not in state:
            raise KeyError(f"{t.name}: no weight of the student maps to it ({key})")
        w = state[key]
        if ".attn_q." in t.name:
            w = _permute(w, cfg.num_attention_heads, cfg.num_attention_heads)
        elif ".attn_k." in t.name:
            w = _permute(w, cfg.num_attention_heads, cfg.num_key_value_heads)
        writer.add_tensor(t.name, w.astype(np.float16 if w.ndim == 2 else np.float32))
        written += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if written != len(reader.tensors):
        raise RuntimeError(f"wrote {written} of {len(reader.tensors)} tensors")
    return out


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
    a = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(os.environ["TRACEMARK_MODEL"])
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()
    export(model, gguf_path, a.out)
    diff = check(model, tok, a.out)
    print(f"wrote {a.out}; largest log-probability difference over the top 20 tokens: {diff:.4f}")
    sys.stdout.flush()
    os._exit(0 if diff < 0.05 else 1)  # llama-cpp-python's finaliser can fail at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
