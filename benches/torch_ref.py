"""PyTorch reference figures for benches/NOTES.md, on whatever device torch finds (CUDA if present).

W1: C = A@B; dA = G@B.T; dB = A.T@G in f32 with TF32 off (so it is the same arithmetic as
wgrad's f32 kernels), median of 10 timed runs after 3 warm-ups, synchronised.
W2: one SGD-with-momentum step of the MLP 784-256-256-10 (sigmoid, softmax cross-entropy,
batch 128), median of 10 blocks of steps, as `bench_step` measures wgrad.
Usage: python3 benches/torch_ref.py [sizes...]   (default 1024 2048 4096)
(needs torch; not a dependency of the project)
"""
import sys
import time

import torch

dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
print(f"torch {torch.__version__} on {name}, TF32 off")


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


def median_ms(f, reps=10, warm=3):
    for _ in range(warm):
        f()
    sync()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        sync()
        ts.append((time.perf_counter() - t) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


for n in [int(x) for x in sys.argv[1:]] or [1024, 2048, 4096]:
    g = torch.Generator(device=dev).manual_seed(0)
    a, b, gr = (torch.rand(n, n, device=dev, generator=g) * 2 - 1 for _ in range(3))
    fwd = median_ms(lambda: a @ b)
    bwd = median_ms(lambda: (gr @ b.T, a.T @ gr))
    both = median_ms(lambda: (a @ b, gr @ b.T, a.T @ gr))
    f = 2 * n**3
    print(
        f"torch W1 n={n}: fwd {fwd:.3f} ms {f / fwd / 1e6:.1f} GFLOP/s | bwd {bwd:.3f} ms "
        f"{2 * f / bwd / 1e6:.1f} GFLOP/s | fwd+bwd {both:.3f} ms {3 * f / both / 1e6:.1f} GFLOP/s"
    )

torch.manual_seed(1)
model = torch.nn.Sequential(
    torch.nn.Linear(784, 256), torch.nn.Sigmoid(),
    torch.nn.Linear(256, 256), torch.nn.Sigmoid(),
    torch.nn.Linear(256, 10),
).to(dev)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
xs = [torch.rand(128, 784, device=dev) for _ in range(4)]
ys = [torch.randint(0, 10, (128,), device=dev) for _ in range(4)]


def step(i):
    opt.zero_grad(set_to_none=False)
    loss = torch.nn.functional.cross_entropy(model(xs[i % 4]), ys[i % 4])
    loss.backward()
    opt.step()


for i in range(5):
    step(i)
sync()
blocks = []
for b in range(10):
    t = time.perf_counter()
    for i in range(50):
        step(i)
    sync()
    blocks.append((time.perf_counter() - t) * 1e3 / 50)
blocks.sort()
print(f"torch W2 784-256-256-10 b128 SGD: {blocks[5]:.3f} ms/step (min {blocks[0]:.3f}, max {blocks[-1]:.3f})")
