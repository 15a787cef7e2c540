#!/usr/bin/env bash
# The device path (tracemark.device) on CUDA, in one call of well under 10 minutes,
# on the GPU machine the `device` tool lends (torch installed, nothing fetchable):
#   here:   make gpu-check-prepare            # dist/gpu: the tracemark wheel, pytest's wheels
#   there:  bash scripts/gpu-check.sh         # run with carry ["dist/gpu"]
# It runs watermark-py/tests/test_device.py with TRACEMARK_TEST_DEVICE=cuda (every golden
# vector and the random batches against the core, bit for bit) and times the device
# path against the core on the same rows.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=dist/gpu
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}  # GPU_CHECK_DEVICE=cpu: a dry run of this script without a GPU
echo "== machine"; nvidia-smi -L || true
"$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); sys.exit(sys.argv[1] == 'cuda' and not torch.cuda.is_available())" "$DEVICE"
SITE=$(mktemp -d)
# Every wheel it needs is in dist/gpu (numpy and torch are the machine's own).
"$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$SITE" TRACEMARK_TEST_DEVICE="$DEVICE"
echo "== golden vectors and random batches on $DEVICE"
(cd watermark-py && "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py)
echo "== timing on $DEVICE"
"$PY" - "$DEVICE" <<'PY'
import sys, time, numpy as np, torch, tracemark as tm
DEV = torch.device(sys.argv[1])
sync = torch.cuda.synchronize if DEV.type == "cuda" else (lambda: None)
from tracemark.device import DeviceScheme
V, key = 128_256, tm.Key.generate()
for spec in ["kgw:gamma=0.25,delta=2,context=lefthash:1", "kgw:gamma=0.25,delta=2,context=selfhash:4",
             "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4", "gumbel:temperature=1,context=lefthash:4"]:
    scheme = tm.Scheme(key, spec, V)
    for batch in ((1, 8, 64) if DEV.type == "cuda" else (1,)):
        hist = np.random.default_rng(0).integers(0, V, size=(batch, 8))
        logits = torch.randn(batch, V, device=DEV)
        d = DeviceScheme(scheme.config, V, DEV)
        def step():
            d.apply(logits, d.row_seeds([scheme] * batch, hist))
        for _ in range(3): step()
        sync(); t = time.perf_counter(); n = 20 if DEV.type == "cuda" else 2
        for _ in range(n): step()
        sync(); gpu = (time.perf_counter() - t) / n
        cpu_rows = logits.cpu().numpy()
        t = time.perf_counter()
        for _ in range(n): scheme.process_batch(hist, cpu_rows.copy())
        core = (time.perf_counter() - t) / n
        print(f"{spec.split(',')[0]:28s} {spec.rsplit('=',1)[1]:12s} batch {batch:3d}: device path {gpu*1e6:9.1f} µs  core (CPU) {core*1e6:9.1f} µs")
PY
echo "== done"
