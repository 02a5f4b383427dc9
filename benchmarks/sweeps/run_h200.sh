#!/bin/bash
# Run on the device machine from the repository root (results land in $OUT). Prepared here first:
#   mkdir -p .gpu/data && cp ../shared/data/{beauty/Beauty.txt,sports/Sports_and_Outdoors.txt,lastfm/LastFM.txt} .gpu/data/
#   nanorec embed attributes --data ../shared/data/beauty/Beauty.txt --out .gpu/data/beauty.safetensors   (sports, lastfm alike)
# (.gpu/ is git-ignored locally and carried to the device). That machine has torch but no polars: the stub
# stands in for the one polars call training makes (writing histories.parquet, through pyarrow).
# device driver: GPU checks alone, then the accuracy sweep until the deadline
T0=$(date +%s)
mkdir -p /tmp/site/polars && cp benchmarks/sweeps/polars_stub.py /tmp/site/polars/__init__.py
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
timeout 200 python3 benchmarks/gpu_check.py .gpu/data/Beauty.txt --steps 100 --out $OUT/gpu_beauty.json > $OUT/gpu_check.log 2>&1
echo "gpu_check rc=$? after $(( $(date +%s) - T0 )) s"; tail -5 $OUT/gpu_check.log
MPS=no
if nvidia-cuda-mps-control -d 2>/dev/null; then
  if timeout 60 python3 -c "import torch; torch.zeros(1).cuda(); print('mps client ok')"; then MPS=yes; else echo quit | nvidia-cuda-mps-control; fi
fi
echo "MPS=$MPS"
LEFT=$(( ${BUDGET:-540} - ( $(date +%s) - T0 ) ))
echo "sweep deadline ${LEFT}s"
python3 benchmarks/sweep.py benchmarks/sweeps/levers_h200.txt --root /tmp/sweep --parallel ${PAR:-14} --deadline-s $LEFT --out $OUT/sweep.json > $OUT/sweep.log 2>&1
echo "sweep rc=$? after $(( $(date +%s) - T0 )) s"; tail -3 $OUT/sweep.log
cd /tmp && tar czf $OUT/runs.tgz --exclude='*.pt' --exclude='*.safetensors' --exclude='*.parquet' --exclude='*.png' sweep
ls -la $OUT; nvidia-smi --query-gpu=memory.used --format=csv
