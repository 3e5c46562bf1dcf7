//! Every op, forward and backward, on the GPU against the CPU reference at odd sizes
//! (1, 3, 17, 127, 257 and > 512; none a multiple of the 64×64 matmul tile).

mod common;
use common::*;
use wgrad::Device;

const SIZES: [(usize, usize, usize); 5] = [(1, 1, 1), (3, 5, 7), (17, 33, 65), (127, 257, 3), (520, 300, 515)];

#[test]
fn every_op_gpu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let cpu = Device::cpu();
    let mut worst = 0.0f32;
    let mut count = 0;
    for &(m, k, n) in &SIZES {
        for (i, c) in op_cases(m, k, n).iter().enumerate() {
            let n_out = out_len(&c.shapes, &c.build);
            let (data, r) = case_data(42 + i as u64, &c.shapes, n_out, c.lo, c.hi);
            let want =
                run_case(&cpu, &c.shapes, &data, &r, &c.build).unwrap_or_else(|e| panic!("{} on CPU: {e}", c.name));
            let got =
                run_case(&gpu, &c.shapes, &data, &r, &c.build).unwrap_or_else(|e| panic!("{} on GPU: {e}", c.name));
            let (atol, rtol) = (1e-4, 1e-3);
            assert_close(&got.value, &want.value, atol, rtol, &format!("{} forward", c.name));
            worst = worst.max(rel_err(&got.value, &want.value, atol, rtol));
            for (j, (gg, wg)) in got.grads.iter().zip(&want.grads).enumerate() {
                assert_close(gg, wg, atol, rtol, &format!("{} d_input{j}", c.name));
                worst = worst.max(rel_err(gg, wg, atol, rtol));
            }
            count += 1;
        }
    }
    eprintln!("{count} GPU-vs-CPU cases; largest error scaled by (1e-4 + 1e-3·|cpu|) = {worst:.3}");
}

#[test]
fn softmax_cross_entropy_gpu_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    for (m, n) in [(1, 1), (3, 7), (17, 65), (127, 3), (600, 10), (5, 1000)] {
        let (l_cpu, g_cpu) = xent_case(&Device::cpu(), m, n, 3, 4.0).unwrap();
        let (l_gpu, g_gpu) = xent_case(&gpu, m, n, 3, 4.0).unwrap();
        assert!(
            (l_cpu - l_gpu).abs() <= 1e-4 + 1e-4 * l_cpu.abs(),
            "{m}x{n}: loss {l_gpu} vs {l_cpu}"
        );
        let (a, b): (Vec<f32>, Vec<f32>) = g_gpu.iter().zip(&g_cpu).map(|(&a, &b)| (a as f32, b as f32)).unzip();
        assert_close(&a, &b, 1e-6, 1e-3, &format!("softmax_cross_entropy {m}x{n} d_logits"));
    }
}

#[test]
fn softmax_cross_entropy_is_stable_for_huge_logits() {
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let (loss, grad) = xent_case(&dev, 8, 10, 11, 1e4).unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{}: loss {loss}", dev.info());
        assert!(
            grad.iter().all(|v| v.is_finite()),
            "{}: non-finite gradient",
            dev.info()
        );
        // Rows of (softmax − onehot)/batch sum to zero.
        for row in grad.chunks(10) {
            assert!(
                row.iter().sum::<f64>().abs() < 1e-6,
                "{}: row sum {}",
                dev.info(),
                row.iter().sum::<f64>()
            );
        }
    }
}

/// Every matmul kernel family, forced on the test adapter, forward and both VJPs at odd shapes:
/// the workgroup-tile kernel real GPUs get is tested here even on a software adapter.
#[test]
fn every_matmul_kernel_matches_cpu() {
    if gpu().is_none() {
        return;
    }
    let cpu = Device::cpu();
    // The subgroup kernel needs 8-wide subgroups; where the test adapter has them it must run.
    let subgroup8 = match gpu() {
        Some(Device::Gpu(g)) => {
            let (a, i) = (g.adapter(), g.adapter().get_info());
            a.features().contains(wgrad::wgpu::Features::SUBGROUP)
                && i.subgroup_min_size == 8
                && i.subgroup_max_size == 8
        }
        _ => false,
    };
    use wgrad::{MatmulKernel, MatmulTiles};
    // The tile kernel with both tables' shapes and a mixed one (8×4 per thread, 4-deep slices).
    let mixed = MatmulTiles {
        bm: 32,
        bn: 16,
        bk: 4,
        tm: 8,
        tn: 4,
    };
    for (kernel, tiles) in [
        (MatmulKernel::Tiled, Some(MatmulTiles::SMALL)),
        (MatmulKernel::Tiled, Some(MatmulTiles::LARGE)),
        (MatmulKernel::Tiled, Some(mixed)),
        (MatmulKernel::Register, None),
        (MatmulKernel::Subgroup, None),
        (MatmulKernel::Naive, None),
    ] {
        let mut opts = wgrad::GpuOptions {
            matmul: kernel,
            tiles,
            ..Default::default()
        };
        if std::env::var("WGRAD_TEST_LIMITS").as_deref() == Ok("downlevel") {
            opts.limits = Some(wgrad::wgpu::Limits::downlevel_defaults());
        }
        let dev = match Device::gpu_with(&opts) {
            Err(e) if kernel == MatmulKernel::Subgroup && !subgroup8 => {
                eprintln!("matmul kernel {kernel:?} not tested: {e}");
                continue;
            }
            d => d.unwrap(),
        };
        // Odd shapes, and vec4-aligned ones that are not multiples of any tile (the subgroup
        // and register kernels' fast paths).
        let shapes = [
            (1, 1, 1),
            (1, 7, 1),
            (3, 5, 7),
            (4, 4, 4),
            (17, 33, 65),
            (20, 36, 44),
            (64, 64, 64),
            (65, 63, 130),
            (127, 257, 3),
            (8, 516, 4),
            (132, 12, 68),
            (260, 12, 10),
            (136, 40, 264),
            (129, 37, 131),
        ];
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            let c = &op_cases(m, k, n)[0];
            assert!(c.name.starts_with("matmul"));
            let (data, r) = case_data(300 + i as u64, &c.shapes, m * n, c.lo, c.hi);
            let want = run_case(&cpu, &c.shapes, &data, &r, &c.build).unwrap();
            let got = run_case(&dev, &c.shapes, &data, &r, &c.build).unwrap();
            let what = format!("{kernel:?} {tiles:?} {}", c.name);
            assert_close(&got.value, &want.value, 1e-4, 1e-3, &format!("{what} forward"));
            assert_close(&got.grads[0], &want.grads[0], 1e-4, 1e-3, &format!("{what} dA"));
            assert_close(&got.grads[1], &want.grads[1], 1e-4, 1e-3, &format!("{what} dB"));
        }
    }
}
