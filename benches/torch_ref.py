"""PyTorch reference figures for benches/NOTES.md, on whatever device torch finds (CUDA if present).

W1: C = A@B; dA = G@B.T; dB = A.T@G in f32 with TF32 off (so it is the same arithmetic as
wgrad's f32 kernels), median of 10 timed runs after 3 warm-ups, synchronised.
W2: one SGD-with-momentum step of the MLP 784-256-256-10 (sigmoid, softmax cross-entropy,
batch 128), median of 10 blocks of steps, as `bench_step` measures wgrad.
Conv: the LeNet-sized stack of `cargo bench --bench conv`, forward and forward + backward.
GPT: one AdamW step of train_gpt's default transformer (batch 32 × context 64).
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

# The LeNet-sized convolution stack of `cargo bench --bench conv`: batch 64 of 1×28×28 →
# conv 6@5×5 → ReLU → max-pool 2 → conv 16@5×5 → ReLU → max-pool 2 → mean; forward alone and
# forward + backward (gradients of both weights and biases, none for the input).
torch.manual_seed(2)
convs = torch.nn.Sequential(
    torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
).to(dev)
xc = torch.rand(64, 1, 28, 28, device=dev) - 0.5


def conv_fwd_bwd():
    convs.zero_grad(set_to_none=False)
    convs(xc).mean().backward()


with torch.no_grad():
    fwd = median_ms(lambda: convs(xc))
both = median_ms(conv_fwd_bwd)
print(f"torch LeNet conv b64: fwd {fwd:.3f} ms | fwd+bwd {both:.3f} ms")

# One training step of train_gpt's default model (2 pre-norm blocks, 4 heads, width 64,
# context 64, GELU, batch 32, AdamW 3e-3, clipping at 1), on random characters of a
# 62-symbol vocabulary: the step time to set beside train_gpt's characters per second.
V, T, D, B = 62, 64, 64, 32


class Gpt(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(V, D)
        self.pos = torch.nn.Embedding(T, D)
        layer = torch.nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(D)
        self.head = torch.nn.Linear(D, V)
        self.mask = torch.nn.Transformer.generate_square_subsequent_mask(T)

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))
        x = self.blocks(x, mask=self.mask.to(ids.device), is_causal=True)
        return self.head(self.norm(x))


gpt = Gpt().to(dev)
gopt = torch.optim.AdamW(gpt.parameters(), lr=3e-3)
ids = torch.randint(0, V, (B, T), device=dev)
tgt = torch.randint(0, V, (B * T,), device=dev)


def gpt_step():
    gopt.zero_grad(set_to_none=False)
    loss = torch.nn.functional.cross_entropy(gpt(ids).reshape(B * T, V), tgt)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
    gopt.step()


step_ms = median_ms(gpt_step)
print(f"torch train_gpt step b{B}×{T}: {step_ms:.3f} ms ({B * T / step_ms * 1e3:.0f} chars/s)")
