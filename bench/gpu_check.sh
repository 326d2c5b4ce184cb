#!/usr/bin/env bash
# One-shot GPU check (≤ 6 min wall on a fresh H100/H200 with this repo `pip install -e .`-ed).
# Run from the repository root:
#     OUT=/path/for/logs SHARED_VIDEOS=/path/to/videos bash bench/gpu_check.sh
# SHARED_VIDEOS: folder searched (recursively) for real clips (.mp4/.avi); default
# /work/shared/data/videos. Every step runs under its own `timeout`, capped by what is left of the
# overall budget, and a failing step does not stop the next one. All output goes to the console
# and to $OUT/gpu_log.txt.
set -u
cd "$(dirname "$0")/.." || exit 1

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_log.txt"
export SHARED_VIDEOS=${SHARED_VIDEOS:-/work/shared/data/videos}
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-350}   # seconds for all steps together
START=$SECONDS

step() {  # step NAME TIMEOUT_S CMD...
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 15 ]; then
        echo "=== SKIP $name: only ${left}s of the ${BUDGET}s budget left"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "=== $name (timeout ${limit}s, t=$((SECONDS - START))s) ==="
    echo "+ $*"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] && echo "!!! $name timed out after ${limit}s"
    echo "=== $name rc=$rc, $((SECONDS - t0))s"
}

{
    echo "gpu_check.sh $(date -u +%FT%TZ) on $(hostname); git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "SHARED_VIDEOS=$SHARED_VIDEOS"
    step nvidia-smi 20 nvidia-smi
    step environment 60 "$PY" -c "import torch, cv2, os; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'); print('opencv', cv2.__version__, 'cpus', os.cpu_count())"

    # 1. TV-L1 at 224²: OpenCV single-thread and 16-process pool timed on the same real frames in
    #    the same run (ratios printed), torch CUDA at two batch sizes, EPE/q8 agreement vs OpenCV.
    step flow_224_cuda 130 "$PY" -m bench.bench_flow --device cuda --resolutions 224 \
        --pairs 512 --batch 256,1024 --cv-pairs 24 --procs "$(nproc)" --cpu-pairs 0 --videos "$SHARED_VIDEOS"

    # 2-3. Other benchmarks, written by the other parts of the project, when present. Their
    #      default clip lies beside the checkout, so hand them one from SHARED_VIDEOS.
    VID=$(find "$SHARED_VIDEOS" -name test.mp4 2>/dev/null | head -n 1)
    [ -z "$VID" ] && VID=$(find "$SHARED_VIDEOS" -name '*.mp4' 2>/dev/null | head -n 1)
    # I3D throughput per stream/batch/precision needs only torch (no video decoding).
    step bench_i3d 70 "$PY" -m bench.bench_i3d --device cuda --batch-sizes 8,32 --precisions fp32,bf16,fp16 --iters 5
    # bench_extract decodes with PyAV, which a bare GPU image may lack.
    if ! "$PY" -c "import av" 2>/dev/null; then
        echo "=== SKIP bench_extract: PyAV is not installed here"
    elif [ -f bench/bench_extract.py ]; then
        step bench_extract 60 "$PY" -m bench.bench_extract ${VID:+"$VID"} --device cuda
    else
        echo "=== SKIP bench_extract: bench/bench_extract.py absent"
    fi
    if [ -f bench/bench_train.py ]; then
        step bench_train 45 "$PY" -m bench.bench_train --device cuda
    else
        echo "=== SKIP bench_train: bench/bench_train.py absent"
    fi
    # 4. torch.compile variant (fused iteration; includes its one-off compile time in a warm-up).
    step flow_224_cuda_compiled 120 "$PY" -m bench.bench_flow --device cuda --resolutions 224 \
        --pairs 1024 --batch 1024 --cv-pairs 8 --procs 0 --cpu-pairs 0 --compile --videos "$SHARED_VIDEOS"

    # 5. Other resolutions, smaller samples.
    step flow_other_res_cuda 60 "$PY" -m bench.bench_flow --device cuda --resolutions 112,340x256 \
        --pairs 256 --batch 256 --cv-pairs 8 --procs 0 --cpu-pairs 0 --videos "$SHARED_VIDEOS"

    # 6. Extraction with the torch flow backend on the GPU.
    if [ -f bench/bench_extract.py ] && "$PY" -c "import av" 2>/dev/null; then
        step bench_extract_torch_flow 45 "$PY" -m bench.bench_extract ${VID:+"$VID"} --device cuda --flow-backend torch
    fi
    echo
    echo "gpu_check.sh done in $((SECONDS - START))s"
} 2>&1 | tee "$LOG"
