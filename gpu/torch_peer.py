#!/usr/bin/env python3
"""The PyTorch peer of the GPU check (issue 13): the same MNIST U-Net (bench/torch_bench.py's port of
lib/models/unet.ts, DDPM config), the same training step as lib/training/train.ts (a batch, t ~ U[1, T],
eps ~ N(0, I), the simple loss, Adam lr 2e-4 with tf.train.adam's epsilon 1e-7), the same batch,
on the same card, timed the way gpu/mnist-webgpu.ts times train(): steps/s after warm-up, with the
losses read back every 25 steps (train()'s progressEvery there), not every step.

Modes, each written to --out as soon as it is measured (a run cut short keeps what it finished):
  eager           the port as written
  compile         torch.compile of the loss (forward; autograd builds the backward), when this torch has it
Then the ratio to the WebGPU run: --webgpu names its summary.json.

Usage: torch_peer.py --device cuda|cpu --batch 128 --seconds 40 --compile-seconds 150 --out torch.json
                     [--webgpu summary.json] [--T 1000]
Full float32 (TF32 off for matmuls and cuDNN convolutions): WebGPU computes in float32 too.
Training data: uniform noise in [-1, 1] of MNIST's shape; a step's time does not depend on the values,
and the device needs no copy of the digits for this.
"""
import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'bench'))
sys.path.insert(0, HERE)  # the pack puts torch_bench.py beside this file

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import torch_bench  # noqa: E402

READ_EVERY = 25


def named_linear_betas(T):
    """namedSchedule('linear', T) of lib/diffusion/schedule.ts: DDPM's betas scaled by 1000 / T, capped at 0.999."""
    scale = 1000.0 / T
    return torch.linspace(1e-4 * scale, min(0.999, 0.02 * scale), T, dtype=torch.float64)


def make_loss(model, T):
    abar = torch.cumprod(1 - named_linear_betas(T), 0)
    sqrt_ab = abar.sqrt().float()
    sqrt_1m_ab = (1 - abar).sqrt().float()

    def loss_fn(x0, t, eps):
        view = [x0.shape[0], 1, 1, 1]
        xt = sqrt_ab[t - 1].reshape(view) * x0 + sqrt_1m_ab[t - 1].reshape(view) * eps
        return F.mse_loss(model(xt, t), eps)

    return loss_fn


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def timed_training(loss_fn, params, data, batch, T, seconds, warmup, device):
    """Warm-up steps, then as many steps as fit in `seconds`; losses read back every READ_EVERY steps."""
    opt = torch.optim.Adam(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-7)
    n = data.shape[0]
    pending = []
    losses = []

    def step():
        idx = torch.randint(0, n, (batch,), device=device)
        t = torch.randint(1, T + 1, (batch,), device=device)
        x0 = data[idx]
        eps = torch.randn_like(x0)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x0, t, eps)
        loss.backward()
        opt.step()
        pending.append(loss.detach())

    def read():
        if pending:
            values = torch.stack(pending).tolist()
            pending.clear()
            for v in values:
                if v != v or v in (float('inf'), float('-inf')):
                    raise RuntimeError(f'loss {v} at step {len(losses) + 1}')
                losses.append(v)

    first = time.perf_counter()
    for _ in range(warmup):
        step()
    read()
    sync(device)
    warm_seconds = time.perf_counter() - first
    start = time.perf_counter()
    steps = 0
    while True:
        step()
        steps += 1
        if steps % READ_EVERY == 0:
            read()
        if time.perf_counter() - start >= seconds:
            break
    read()
    sync(device)
    elapsed = time.perf_counter() - start
    return {'stepsPerSecondAfterWarmup': steps / elapsed, 'steps': steps, 'seconds': elapsed, 'warmupSteps': warmup,
            'warmupSeconds': warm_seconds, 'firstLoss': losses[0], 'lastLoss': losses[-1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--T', type=int, default=1000)
    ap.add_argument('--seconds', type=float, default=40)
    ap.add_argument('--compile-seconds', type=float, default=150, help='skip torch.compile when less than this is left of --budget')
    ap.add_argument('--budget', type=float, default=1e9, help='seconds this script may take in all')
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--out', required=True)
    ap.add_argument('--webgpu', help="gpu/mnist-webgpu.ts's summary.json, for the ratio")
    a = ap.parse_args()
    for name in ('batch', 'T', 'warmup'):
        if getattr(a, name) < 1:
            ap.error(f'--{name} must be >= 1, got {getattr(a, name)}')
    if a.device not in ('cuda', 'cpu'):
        ap.error(f"--device must be 'cuda' or 'cpu', got {a.device!r}")
    if a.device == 'cuda' and not torch.cuda.is_available():
        ap.error('--device cuda: torch.cuda.is_available() is False')
    began = time.perf_counter()

    out = {'torch': torch.__version__, 'python': platform.python_version(), 'device': a.device, 'batch': a.batch, 'T': a.T,
           'optimizer': 'torch.optim.Adam lr 2e-4, betas (0.9, 0.999), eps 1e-7', 'readEvery': READ_EVERY}
    if a.device == 'cuda':
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        torch.set_default_device('cuda')  # the port makes its parameters with torch.empty/zeros/ones
        out['gpu'] = torch.cuda.get_device_name(0)
        out['cudnn'] = torch.backends.cudnn.version()
        out['tf32'] = False
    else:
        out['threads'] = torch.get_num_threads()

    def save():
        tmp = a.out + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(out, f, indent=2)
        os.replace(tmp, a.out)

    save()
    torch.manual_seed(0)
    model = torch_bench.UNetDenoiser()
    out['params'] = sum(t.numel() for t in model.p.tensors)
    data = torch.rand(2048, 1, 28, 28, device=a.device) * 2 - 1
    loss_fn = make_loss(model, a.T)

    out['eager'] = timed_training(loss_fn, model.p.tensors, data, a.batch, a.T, a.seconds, a.warmup, a.device)
    print(f"torch eager: {out['eager']['stepsPerSecondAfterWarmup']:.2f} steps/s", flush=True)
    save()

    left = a.budget - (time.perf_counter() - began)
    if not hasattr(torch, 'compile'):
        out['compile'] = {'skipped': f'torch {torch.__version__} has no torch.compile'}
    elif left < a.compile_seconds:
        out['compile'] = {'skipped': f'{left:.0f} s left of the budget, less than --compile-seconds {a.compile_seconds:.0f}'}
    else:
        try:
            compiled = torch.compile(loss_fn)
            out['compile'] = timed_training(compiled, model.p.tensors, data, a.batch, a.T, a.seconds, a.warmup, a.device)
            out['compile']['note'] = 'warmupSeconds includes the compilation'
            print(f"torch compile: {out['compile']['stepsPerSecondAfterWarmup']:.2f} steps/s", flush=True)
        except Exception as e:  # recorded: the eager figure stands on its own
            out['compile'] = {'failed': f'{type(e).__name__}: {str(e)[:500]}'}
    save()

    if a.webgpu and os.path.exists(a.webgpu):
        with open(a.webgpu) as f:
            webgpu = json.load(f)
        w = (webgpu.get('training') or {}).get('stepsPerSecondAfterWarmup')
        best = max((m['stepsPerSecondAfterWarmup'], k) for k, m in ((k, out.get(k) or {}) for k in ('eager', 'compile'))
                   if 'stepsPerSecondAfterWarmup' in m)
        same_batch = (webgpu.get('training') or {}).get('batch') == a.batch
        out['ratio'] = {
            'webgpuStepsPerSecond': w,
            'torchStepsPerSecond': best[0],
            'torchMode': best[1],
            'webgpuStepTimeOverTorch': best[0] / w if w else None,
            'sameBatch': same_batch,
            'note': 'WebGPU step time / PyTorch step time (the target is <= 3)',
        }
        save()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
