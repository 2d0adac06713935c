#!/usr/bin/python3
"""PyTorch side of `npm run bench` (bench/run.ts invokes it with Debian's /usr/bin/python3).

The same workloads as bench/workloads.ts, with the same shapes, the same kind of initial weights
(Glorot uniform kernels, zero biases; DDPM's zero-initialised output convs in the U-Net) and the
same Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7 = tf.train.adam's default epsilon). MlpDenoiser and
UNetDenoiser are ports of lib/models/mlp.ts and lib/models/unet.ts that create their parameters in
the same order and with the same shapes as the TypeScript ParamBuilder (NHWC kernels [kh, kw, in,
out] and dense kernels [in, out] are kept in that layout here, and transposed when used), so that
weights can be copied across and outputs compared (test/bench.test.ts does).

Usage:
  torch_bench.py params '{"unetBatch": 32}'            -> JSON: parameter counts and shapes per model
  torch_bench.py bench '{"workloads": [...], "reps": 20, "sampleReps": 3, "budgetSeconds": 20, "unetBatch": 32}'
  torch_bench.py forward < {"model": "mlp"|"unet", "config": {...}, "weights": [[...], ...], "xt": [...], "shape": [...], "t": [...]}
                          (or a list of such requests -> a list of results)
Every mode prints one JSON object on stdout.
"""
import json
import math
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Parameters, created in the order of lib/models/layers.ts ParamBuilder


class Params:
    """An ordered list of (name, tensor) like ParamBuilder: kernels in the TS layout."""

    def __init__(self, weights=None):
        self.names = []
        self.tensors = []
        self.weights = weights

    def _add(self, name, shape, draw):
        k = len(self.tensors)
        if self.weights is not None:
            w = torch.tensor(self.weights[k], dtype=torch.float32).reshape(shape)
        else:
            w = draw()
        w.requires_grad_(True)
        self.names.append(name)
        self.tensors.append(w)
        return w

    def kernel(self, name, shape, init):
        if init == 'zeros':
            return self._add(name, shape, lambda: torch.zeros(shape))
        receptive = math.prod(shape[:-2])
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        limit = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, as ParamBuilder's default
        return self._add(name, shape, lambda: torch.empty(shape).uniform_(-limit, limit))

    def dense(self, name, d_in, d_out, init='glorotUniform'):
        return {'kernel': self.kernel(name + '.kernel', [d_in, d_out], init),
                'bias': self._add(name + '.bias', [d_out], lambda: torch.zeros(d_out))}

    def conv(self, name, size, c_in, c_out, init='glorotUniform'):
        return {'kernel': self.kernel(name + '.kernel', [size, size, c_in, c_out], init),
                'bias': self._add(name + '.bias', [c_out], lambda: torch.zeros(c_out))}

    def norm(self, name, c):
        return {'gamma': self._add(name + '.gamma', [c], lambda: torch.ones(c)),
                'beta': self._add(name + '.beta', [c], lambda: torch.zeros(c))}

    def finish(self):
        if self.weights is not None and len(self.weights) != len(self.tensors):
            raise ValueError(f'weights must have {len(self.tensors)} tensors, got {len(self.weights)}')


def dense(x, p):
    return F.linear(x, p['kernel'].t(), p['bias'])


def conv2d(x, p, stride=1):
    """TF 'same' padding on NCHW input: for stride 2 on an even size TF pads 0 before, 1 after."""
    w = p['kernel'].permute(3, 2, 0, 1)
    k = w.shape[-1]
    if stride == 1:
        return F.conv2d(x, w, p['bias'], padding=k // 2)
    h = x.shape[-1]
    total = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
    before = total // 2
    x = F.pad(x, (before, total - before, before, total - before))
    return F.conv2d(x, w, p['bias'], stride=stride)


def group_norm(x, p, groups):
    return F.group_norm(x, groups, p['gamma'], p['beta'], eps=1e-5)


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.tensor([math.exp(-math.log(max_period) * i / half) for i in range(half)], dtype=torch.float32)
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


# ---------------------------------------------------------------------------------------------
# lib/models/mlp.ts


class MlpDenoiser:
    DEFAULTS = {'dataDim': 2, 'hidden': 128, 'depth': 3, 'embedDim': 32}

    def __init__(self, config=None, weights=None):
        c = {**self.DEFAULTS, **{k: v for k, v in (config or {}).items() if k in self.DEFAULTS}}
        self.c = c
        p = Params(weights)
        self.hidden = [p.dense(f'hidden.{i}', c['dataDim'] + c['embedDim'] if i == 0 else c['hidden'], c['hidden'])
                       for i in range(c['depth'])]
        self.out = p.dense('out', c['hidden'], c['dataDim'])
        p.finish()
        self.p = p

    def __call__(self, xt, t):
        h = torch.cat([xt, timestep_embedding(t, self.c['embedDim'])], dim=1)
        for layer in self.hidden:
            h = F.silu(dense(h, layer))
        return dense(h, self.out)


# ---------------------------------------------------------------------------------------------
# lib/models/unet.ts (NCHW here; the TS model is NHWC)


class UNetDenoiser:
    DEFAULTS = {'imageSize': 28, 'channels': 1, 'baseChannels': 32, 'channelMults': [1, 2, 2], 'numResBlocks': 1,
                'attention': True, 'groups': 8, 'zeroInitOutput': True}

    def __init__(self, config=None, weights=None):
        c = {**self.DEFAULTS, **{k: v for k, v in (config or {}).items() if k in self.DEFAULTS}}
        self.c = c
        p = Params(weights)
        out_init = 'zeros' if c['zeroInitOutput'] else 'glorotUniform'
        base, levels = c['baseChannels'], len(c['channelMults'])
        lowest = levels - 1

        def make_res(name, c_in, c_out):
            r = {'norm1': p.norm(f'{name}.norm1', c_in), 'conv1': p.conv(f'{name}.conv1', 3, c_in, c_out),
                 'timeProjection': p.dense(f'{name}.timeProjection', 4 * base, c_out),
                 'norm2': p.norm(f'{name}.norm2', c_out), 'conv2': p.conv(f'{name}.conv2', 3, c_out, c_out, out_init)}
            r['skip'] = p.conv(f'{name}.skip', 1, c_in, c_out) if c_in != c_out else None
            return r

        def make_attention(name, ch):
            return {'norm': p.norm(f'{name}.norm', ch), 'q': p.conv(f'{name}.q', 1, ch, ch), 'k': p.conv(f'{name}.k', 1, ch, ch),
                    'v': p.conv(f'{name}.v', 1, ch, ch), 'proj': p.conv(f'{name}.proj', 1, ch, ch, out_init)}

        self.time_mlp = [p.dense('time.0', base, 4 * base), p.dense('time.1', 4 * base, 4 * base)]
        self.conv_in = p.conv('convIn', 3, c['channels'], base)
        ch = base
        skip_channels = [ch]
        self.down = []
        for i in range(levels):
            blocks = []
            for j in range(c['numResBlocks']):
                out_c = base * c['channelMults'][i]
                res = make_res(f'down.{i}.{j}.res', ch, out_c)
                ch = out_c
                att = make_attention(f'down.{i}.{j}.attention', ch) if c['attention'] and i == lowest else None
                blocks.append((res, att))
                skip_channels.append(ch)
            downsample = p.conv(f'down.{i}.downsample', 3, ch, ch) if i < lowest else None
            if downsample is not None:
                skip_channels.append(ch)
            self.down.append((blocks, downsample))
        self.middle = (make_res('middle.res1', ch, ch),
                       make_attention('middle.attention', ch) if c['attention'] else None,
                       make_res('middle.res2', ch, ch))
        self.up = []
        for i in range(lowest, -1, -1):
            blocks = []
            for j in range(c['numResBlocks'] + 1):
                out_c = base * c['channelMults'][i]
                res = make_res(f'up.{i}.{j}.res', ch + skip_channels.pop(), out_c)
                ch = out_c
                att = make_attention(f'up.{i}.{j}.attention', ch) if c['attention'] and i == lowest else None
                blocks.append((res, att))
            upsample = p.conv(f'up.{i}.upsample', 3, ch, ch) if i > 0 else None
            self.up.append((blocks, upsample))
        self.out_norm = p.norm('out.norm', ch)
        self.conv_out = p.conv('out.conv', 3, ch, c['channels'], out_init)
        p.finish()
        self.p = p

    def _res(self, x, temb, r):
        g = self.c['groups']
        h = conv2d(F.silu(group_norm(x, r['norm1'], g)), r['conv1'])
        h = h + dense(F.silu(temb), r['timeProjection'])[:, :, None, None]
        h = conv2d(F.silu(group_norm(h, r['norm2'], g)), r['conv2'])
        return (conv2d(x, r['skip']) if r['skip'] is not None else x) + h

    def _attention(self, x, a):
        b, ch, hh, ww = x.shape
        h = group_norm(x, a['norm'], self.c['groups'])
        positions = lambda y: y.reshape(b, ch, hh * ww).transpose(1, 2)  # [b, HW, C], row-major positions as NHWC
        q, k, v = positions(conv2d(h, a['q'])), positions(conv2d(h, a['k'])), positions(conv2d(h, a['v']))
        w = torch.softmax(torch.bmm(q, k.transpose(1, 2)) * (1.0 / math.sqrt(ch)), dim=-1)
        attended = torch.bmm(w, v).transpose(1, 2).reshape(b, ch, hh, ww)
        return x + conv2d(attended, a['proj'])

    def __call__(self, xt, t):
        temb = dense(F.silu(dense(timestep_embedding(t, self.c['baseChannels']), self.time_mlp[0])), self.time_mlp[1])
        h = conv2d(xt, self.conv_in)
        skips = [h]
        for blocks, downsample in self.down:
            for res, att in blocks:
                h = self._res(h, temb, res)
                if att is not None:
                    h = self._attention(h, att)
                skips.append(h)
            if downsample is not None:
                h = conv2d(h, downsample, 2)
                skips.append(h)
        res1, att, res2 = self.middle
        h = self._res(h, temb, res1)
        if att is not None:
            h = self._attention(h, att)
        h = self._res(h, temb, res2)
        for blocks, upsample in self.up:
            for res, att in blocks:
                h = self._res(torch.cat([h, skips.pop()], dim=1), temb, res)
                if att is not None:
                    h = self._attention(h, att)
            if upsample is not None:
                h = conv2d(F.interpolate(h, scale_factor=2, mode='nearest'), upsample)
        return conv2d(F.silu(group_norm(h, self.out_norm, self.c['groups'])), self.conv_out)


# ---------------------------------------------------------------------------------------------
# Workloads


def linear_schedule(T=1000, beta_start=1e-4, beta_end=0.02):
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    alpha_bars = torch.cumprod(1 - betas, 0)
    return betas, alpha_bars


def adam(params):
    return torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-7)


def plain_net(kind):
    """The issue's two plain workloads, weights in the TS layout, used through dense/conv2d."""
    p = Params()
    if kind == 'mlp':
        sizes = [3, 128, 128, 128, 2]
        layers = [p.dense(f'l{i}', sizes[i], sizes[i + 1]) for i in range(4)]
        x, target = torch.randn(256, 3), torch.randn(256, 2)
        layer = dense
    else:
        ch = [1, 32, 32, 1]
        layers = [p.conv(f'l{i}', 3, ch[i], ch[i + 1]) for i in range(3)]
        x, target = torch.randn(32, 1, 28, 28), torch.randn(32, 1, 28, 28)
        layer = conv2d
    opt = adam(p.tensors)

    def step():
        opt.zero_grad(set_to_none=True)
        h = x
        for i, l in enumerate(layers):
            h = layer(h, l)
            if i < len(layers) - 1:
                h = F.relu(h)
        loss = F.mse_loss(h, target)
        loss.backward()
        opt.step()
        return loss.item()

    return step, p


def denoiser_step(model, data, batch):
    """One step of lib/training/train.ts: a random batch, t ~ U[1, T], eps ~ N(0, I), the simple loss, Adam."""
    _, alpha_bars = linear_schedule()
    sqrt_ab = alpha_bars.sqrt().float()
    sqrt_1m_ab = (1 - alpha_bars).sqrt().float()
    opt = adam(model.p.tensors)
    n = data.shape[0]
    view = [batch] + [1] * (data.dim() - 1)

    def step():
        idx = torch.randint(0, n, (batch,))
        t = torch.randint(1, 1001, (batch,))
        x0 = data[idx]
        eps = torch.randn_like(x0)
        xt = sqrt_ab[t - 1].reshape(view) * x0 + sqrt_1m_ab[t - 1].reshape(view) * eps
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(xt, t), eps)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def sampler():
    """sampleDDPM with the default variance sigma_q(t)^2, 256 samples of 2-D, T = 1000."""
    model = MlpDenoiser()
    betas, alpha_bars = linear_schedule()
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
    sigma2 = (betas * (1 - ab_prev) / (1 - alpha_bars)).float()
    eps_coef = (betas / (1 - alpha_bars).sqrt()).float()
    recip_sqrt_alpha = (1 / (1 - betas).sqrt()).float()

    def run():
        with torch.no_grad():
            x = torch.randn(256, 2)
            for t in range(1000, 0, -1):
                tt = torch.full((256,), t, dtype=torch.long)
                mean = recip_sqrt_alpha[t - 1] * (x - eps_coef[t - 1] * model(x, tt))
                x = mean if t == 1 else mean + sigma2[t - 1].sqrt() * torch.randn(256, 2)
            return float(x[0, 0])

    return run


def build(name, cfg):
    if name in ('mlp', 'conv'):
        return plain_net(name)
    if name == 'mlpDenoiser':
        m = MlpDenoiser()
        return denoiser_step(m, torch.randn(10000, 2), 256), m.p
    if name == 'unet':
        m = UNetDenoiser()
        b = cfg['unetBatch']
        return denoiser_step(m, torch.rand(max(256, b), 1, 28, 28) * 2 - 1, b), m.p
    if name == 'sample':
        return sampler(), None
    raise ValueError(f'unknown workload {name}')


def measure(step, reps, budget, min_reps=3):
    """bench/core.ts measureSteps: warm-up, cap, then clamp(budget / second, minReps, reps) timed steps."""
    def timed():
        start = time.perf_counter()
        step()
        return time.perf_counter() - start
    first = timed()
    if first > budget:
        return {'status': 'capped', 'seconds': first, 'reps': 1, 'budgetSeconds': budget}
    second = timed()
    min_reps = min(min_reps, reps)
    n = max(min_reps, min(reps, int(budget // second) if second > 0 else reps))
    times = [timed() for _ in range(n)]
    s = sorted(times)
    mid = len(s) // 2
    med = s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
    return {'status': 'ok', 'seconds': med, 'reps': n, 'times': times, 'firstSeconds': first}


def param_info(p):
    return {'params': sum(t.numel() for t in p.tensors), 'names': p.names, 'shapes': [list(t.shape) for t in p.tensors]}


def forward(req):
    cls = MlpDenoiser if req['model'] == 'mlp' else UNetDenoiser
    model = cls(req['config'], req['weights'])
    xt = torch.tensor(req['xt'], dtype=torch.float32).reshape(req['shape'])
    if req['model'] == 'unet':
        xt = xt.permute(0, 3, 1, 2)  # NHWC in, NCHW here
    with torch.no_grad():
        eps = model(xt, torch.tensor(req['t'], dtype=torch.long))
    if req['model'] == 'unet':
        eps = eps.permute(0, 2, 3, 1)
    return {'eps': eps.reshape(-1).tolist(), **param_info(model.p)}


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ''
    cfg = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    threads = int(cfg.get('threads') or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if mode == 'params':
        out = {}
        for name in ('mlp', 'conv', 'mlpDenoiser', 'unet'):
            _, p = build(name, {'unetBatch': cfg.get('unetBatch', 32)})
            out[name] = param_info(p)
        print(json.dumps(out))
    elif mode == 'bench':
        results = {}
        for name in cfg['workloads']:
            try:
                step, p = build(name, cfg)
                reps = cfg['sampleReps'] if name == 'sample' else cfg['reps']
                r = measure(step, reps, cfg['budgetSeconds'])
                if p is not None:
                    r['params'] = sum(t.numel() for t in p.tensors)
                results[name] = r
            except Exception as e:  # recorded per workload; the TS side prints it
                results[name] = {'status': 'failed', 'error': f'{type(e).__name__}: {e}'}
            print(f'torch {name}: {results[name].get("seconds", results[name].get("error"))}', file=sys.stderr, flush=True)
        print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'python': platform.python_version(),
                          'results': results}))
    elif mode == 'forward':
        # One request or a list of them (one torch import for several checks).
        req = json.load(sys.stdin)
        out = [forward(r) for r in req] if isinstance(req, list) else forward(req)
        print(json.dumps(out))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
