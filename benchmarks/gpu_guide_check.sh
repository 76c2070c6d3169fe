#!/usr/bin/env bash
# CUDA check of the noise-aware guide and classifier guidance (device tool), after gpu_smoke.sh:
# digits classifier → guide → diffusion → sampling with classifier guidance; then tests/test_guide.py.
set -uo pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:src VISREP_CACHE=/tmp/visrep-cache
OUT=${OUT:-/tmp/out}; R=/tmp/runs; V="python3 -m visrep"
{
$V train classifier --config configs/digits.yaml run.root=$R --name clf train.tensorboard=false | tail -1
$V train guide --config configs/guide_digits.yaml guide.conditioning_run=$R/clf run.root=$R --name guide train.steps=300 train.tensorboard=false | tail -2
$V train diffusion --config configs/diffusion_digits.yaml diffusion.conditioning_run=$R/clf run.root=$R --name diff train.steps=500 diffusion.final_samples=0 train.tensorboard=false | tail -1
$V sample $R/diff --class 3 --n 64 --guidance 1 --classifier-guidance $R/guide --classifier-scale 2 --out $R/cg | tail -1
python3 -c "import json; d=json.load(open('$R/cg/generator.json')); print('declared hashes:', len(d['conditioning_weights_sha256']), d.get('classifier_guidance'))"
CUBLAS_WORKSPACE_CONFIG=:4096:8 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_guide.py 2>&1 | tail -3
} 2>&1 | tee $OUT/guide_check.txt
