#!/usr/bin/env bash
# CUDA check on a lent GPU machine (device tool): the same code paths as on CPU, on cuda.
# Usage there: bash benchmarks/gpu_check.sh   (omegaconf travels as a wheel in .whl/)
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
python3 - <<'PY'
import torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
echo "== classifier on digits (cuda, bf16 autocast) =="
python3 -m visrep train classifier --config configs/digits.yaml run.root=/tmp/runs --name gpu-digits train.tensorboard=false 2>&1 | tail -4
python3 -m visrep evaluate classifier /tmp/runs/gpu-digits --split test 2>&1 | tail -7
echo "== throughput (synthetic CIFAR-sized batches) =="
python3 - <<'PY'
import time, torch, torch.nn.functional as F
from visrep.models import create_model
def rate(name, bs=512, bf16=True, cl=True, steps=20, **kw):
    m = create_model(name, 10, 3, 32, **kw).cuda()
    if cl: m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(bs, 3, 32, 32, device="cuda"); y = torch.randint(0, 10, (bs,), device="cuda")
    if cl: x = x.contiguous(memory_format=torch.channels_last)
    for i in range(steps + 5):
        if i == 5: torch.cuda.synchronize(); t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(m(x).float(), y)
        opt.zero_grad(); loss.backward(); opt.step()
    torch.cuda.synchronize(); return bs * steps / (time.perf_counter() - t)
print(f"fastcnn bf16 channels_last: {rate('fastcnn'):.0f} img/s")
print(f"resnet18_cifar bf16: {rate('resnet18_cifar'):.0f} img/s")
print(f"tv:resnet18 fp32: {rate('tv:resnet18', bf16=False, cl=False):.0f} img/s")
PY
echo "== test suite on the GPU machine (training tests pick cuda) =="
python3 -m pytest -q -x -p no:cacheprovider tests/test_classifier_training.py tests/test_reliability.py tests/test_models.py 2>&1 | tail -15
