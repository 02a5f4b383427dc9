#!/bin/bash
# Run on the device machine from the repository root (results land in $OUT). Prepared here first:
#   mkdir -p .gpu/data && cp ../shared/data/{beauty/Beauty.txt,sports/Sports_and_Outdoors.txt,lastfm/LastFM.txt} .gpu/data/
#   nanorec embed attributes --data ../shared/data/beauty/Beauty.txt --out .gpu/data/beauty.safetensors   (sports, lastfm alike)
# (.gpu/ is git-ignored locally and carried to the device). That machine has torch but no polars: the stub
# stands in for the one polars call training makes (writing histories.parquet, through pyarrow).
T0=$(date +%s)
mkdir -p /tmp/site/polars && cp benchmarks/sweeps/polars_stub.py /tmp/site/polars/__init__.py
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
nvidia-cuda-mps-control -d 2>/dev/null && echo MPS on
python3 benchmarks/sweep.py benchmarks/sweeps/more_h200.txt --root /tmp/sweep2 --parallel 7 --deadline-s ${SWEEP:-200} --out $OUT/sweep2.json > $OUT/sweep2.log 2>&1
echo "sweep rc=$? after $(( $(date +%s) - T0 )) s"; cat $OUT/sweep2.log
echo quit | nvidia-cuda-mps-control 2>/dev/null; sleep 1
cd /tmp && tar czf $OUT/runs2.tgz --exclude='*.pt' --exclude='*.safetensors' --exclude='*.parquet' --exclude='*.png' sweep2; cd - >/dev/null
LEFT=$(( ${BUDGET:-280} - ( $(date +%s) - T0 ) ))
echo "compile check with ${LEFT}s"
timeout $LEFT python3 benchmarks/gpu_check.py .gpu/data/Beauty.txt --steps 100 --only "sdpa fp32,sdpa fp32 compile,sdpa bf16,sdpa bf16 compile,flex bf16 compile" --out $OUT/gpu_compile.json > $OUT/gpu_compile.log 2>&1
echo "compile rc=$? after $(( $(date +%s) - T0 )) s"; grep -v Warn $OUT/gpu_compile.log | head -30
