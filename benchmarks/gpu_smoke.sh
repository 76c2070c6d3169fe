#!/usr/bin/env bash
# CUDA smoke test of every stage on a lent GPU machine (device tool), as one prepared script:
#   classifier → evaluator → embeddings → GAN → diffusion → sampling → generative evaluation,
# on the embedded digits data, then the diffusion U-Net's training and sampling speed on CUDA and the
# GAN and diffusion tests with CUDA visible. The machine's own torch is used (not the project's pin);
# the packages it lacks travel as wheels in .whl/ (omegaconf, antlr4, diffusers, importlib_metadata).
# Usage there: bash benchmarks/gpu_smoke.sh   (logs to $OUT)
set -uo pipefail
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export VISREP_CACHE=/tmp/visrep-cache
R=/tmp/runs
V="python3 -m visrep"
status=0
step() {  # step NAME COMMAND...: run, keep the log, record pass/fail
  local name=$1; shift
  local started=$(date +%s%N)
  if "$@" > "$OUT/$name.log" 2>&1; then result=ok; else result=FAILED; status=1; fi
  printf '%-28s %-6s %6d ms\n' "$name" "$result" "$(( ($(date +%s%N) - started) / 1000000 ))" | tee -a "$OUT/summary.txt"
  tail -3 "$OUT/$name.log"
}
python3 - <<'PY' | tee "$OUT/summary.txt"
import torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-",
      "bf16", torch.cuda.is_bf16_supported() if torch.cuda.is_available() else "-")
PY
step classifier   $V train classifier --config configs/digits.yaml run.root=$R --name clf train.tensorboard=false
step evaluator    $V train evaluator --config configs/evaluator_digits.yaml --conditioning $R/clf run.root=$R --name ev train.tensorboard=false
step embed        $V embed $R/clf --layers stages --out $R/clf-emb
step gan          $V train gan --config configs/gan_digits.yaml gan.conditioning_run=$R/clf run.root=$R --name gan train.steps=300 gan.final_samples=500 train.tensorboard=false
step gan-embedding $V train gan --config configs/gan_digits.yaml gan.conditioning_run=$R/clf run.root=$R --name gan-emb gan.conditioning=embedding gan.projected_head=true gan.projected_layer=stage2 gan.guidance_weight=0.5 train.steps=100 gan.final_samples=200 train.tensorboard=false
step diffusion    $V train diffusion --config configs/diffusion_digits.yaml diffusion.conditioning_run=$R/clf run.root=$R --name diff train.steps=600 diffusion.final_samples=500 train.tensorboard=false
step diffusion-embedding-repa $V train diffusion --config configs/diffusion_digits.yaml diffusion.conditioning_run=$R/clf run.root=$R --name diff-emb diffusion.conditioning=embedding diffusion.repa_weight=0.5 train.steps=100 diffusion.final_samples=200 train.tensorboard=false
step sample-gan   $V sample $R/gan --class 3 --n 16 --out $R/s-gan
step sample-diffusion $V sample $R/diff --class 3 --n 16 --solver ddim --steps 20 --guidance 2 --out $R/s-diff
step sample-like  $V sample $R/diff-emb --n 8 --out $R/s-emb
step score-gan    $V evaluate generated --evaluator $R/ev --fake $R/gan --in-loop --no-cas run.root=$R --name score-gan
step score-diffusion $V evaluate generated --evaluator $R/ev --fake $R/diff --in-loop run.root=$R --name score-diff
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then  # NCCL needs one GPU per process
  TR="python3 -m torch.distributed.run --standalone --nproc_per_node=2 -m visrep"
  step ddp-classifier $TR train classifier --config configs/digits.yaml run.root=$R --name ddp-clf data.batch_size=64 train.tensorboard=false
  step ddp-gan       $TR train gan --config configs/gan_digits.yaml gan.conditioning_run=$R/clf run.root=$R --name ddp-gan train.steps=200 data.batch_size=32 gan.final_samples=500 train.tensorboard=false
  step ddp-diffusion $TR train diffusion --config configs/diffusion_digits.yaml diffusion.conditioning_run=$R/clf run.root=$R --name ddp-diff train.steps=200 data.batch_size=32 diffusion.final_samples=500 train.tensorboard=false
  step ddp-score     $TR evaluate generated --evaluator $R/ev --fake $R/ddp-diff --no-cas run.root=$R --name ddp-score
else
  echo "ddp (NCCL): skipped, $GPUS GPU(s): NCCL needs one GPU per process" | tee -a "$OUT/summary.txt"
fi
grep -h "GAN-test accuracy\|^| FID" "$R/score-gan/report.md" "$R/score-diff/report.md" 2>/dev/null | tee -a "$OUT/summary.txt"
cp $R/diff/grids/final.png "$OUT/diffusion-final.png" 2>/dev/null
cp $R/gan/grids/final.png "$OUT/gan-final.png" 2>/dev/null
echo "== the MNIST-sized U-Net on CUDA: training and sampling speed ==" | tee -a "$OUT/summary.txt"
step unet-speed python3 - <<'PY'
import time, torch
from visrep.models import create_model
from visrep.diffusion.sampler import DiffusionGenerator, SamplingOptions
from visrep.diffusion.loss import noise_batch, weighted_mse
from visrep.diffusion.schedule import alphas_cumprod
dev = torch.device("cuda")
for patch, width, mults in ((1, 32, [1, 2, 2]), (2, 48, [1, 2])):
    m = create_model("unet", image_size=28, channels=1, mode="class", num_classes=10, width=width,
                     multipliers=mults, patch=patch).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3); a = alphas_cumprod()
    x = torch.rand(512, 1, 28, 28, device=dev) * 2 - 1; c = torch.randint(0, 10, (512,), device=dev)
    for i in range(30):
        if i == 10: torch.cuda.synchronize(); t = time.perf_counter()
        b = noise_batch(x, a, 5.0)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = weighted_mse(m(b.noisy, b.timesteps, c), b)
        opt.zero_grad(); loss.backward(); opt.step()
    torch.cuda.synchronize(); train = 20 * 512 / (time.perf_counter() - t)
    g = DiffusionGenerator(m.eval(), SamplingOptions("dpm++", 20, 1.5), True)
    z = torch.randn(4096, 784); labels = torch.arange(4096) % 10
    g(z[:64], labels[:64]); torch.cuda.synchronize(); t = time.perf_counter()
    g(z, labels); torch.cuda.synchronize(); sample = 4096 / (time.perf_counter() - t)
    print(f"patch {patch} width {width} {mults}: training {train:.0f} img/s (batch 512), "
          f"sampling {sample:.0f} img/s (dpm++ 20 steps, guidance 1.5)")
PY
grep "img/s" "$OUT/unet-speed.log" | tee -a "$OUT/summary.txt"
echo "== GAN and diffusion tests with CUDA visible ==" | tee -a "$OUT/summary.txt"
step tests env CUBLAS_WORKSPACE_CONFIG=:4096:8 python3 -m pytest -q -x -p no:cacheprovider -n 8 tests/test_diffusion.py tests/test_gan.py
tail -3 "$OUT/tests.log" >> "$OUT/summary.txt"
exit $status
