#!/bin/bash
# The README's headline row for one data set: attribute table, the default config with content at
# seeds 1337, 1 and 2, then benchmarks/seeds.py (test figures per seed, their mean, cold targets).
#   bash benchmarks/headline.sh beauty|sports|lastfm      (from the repository root, venv active)
# ~16 / 25-36 / 6 minutes a seed on the 2-core CPU for Beauty / Sports / LastFM (training, then fusion and evaluation).
set -euo pipefail
case "${1:-}" in
  beauty) data=../shared/data/beauty/Beauty.txt ;;
  sports) data=../shared/data/sports/Sports_and_Outdoors.txt ;;
  lastfm) data=../shared/data/lastfm/LastFM.txt ;;
  *) echo "usage: bash benchmarks/headline.sh beauty|sports|lastfm" >&2; exit 2 ;;
esac
name=$1
out=runs/headline
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE
nanorec embed attributes --data "$data" --out "$out/${name}_attributes.safetensors" --no-progress
for seed in 1337 1 2; do
  nanorec train --data "$data" --out "$out/${name}_s$seed" content="$out/${name}_attributes.safetensors" seed=$seed --quiet
done
python benchmarks/seeds.py "$data" "$out/${name}_s1337" "$out/${name}_s1" "$out/${name}_s2" --out "benchmarks/results/seeds_${name}.json"
