"""W1 through NumPy (OpenBLAS), the CPU reference figure in benches/NOTES.md.

C = A@B; dA = G@B.T; dB = A.T@G in f32, 8 runs, the first dropped as warm-up, median reported.
Usage: python3 benches/numpy_w1.py 1024 2048
(needs `pip install numpy`; not a dependency of the project)
"""
import sys
import time

import numpy as np

for n in [int(x) for x in sys.argv[1:]]:
    rng = np.random.default_rng(0)
    a, b, g = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(3))
    times = []
    for _ in range(8):
        t = time.perf_counter()
        c = a @ b
        da = g @ b.T
        db = a.T @ g
        times.append(time.perf_counter() - t)
    times = sorted(times[1:])
    med = times[len(times) // 2]
    print(f"numpy W1 n={n}: {med * 1e3:.1f} ms {6 * n**3 / med / 1e9:.1f} GFLOP/s")
