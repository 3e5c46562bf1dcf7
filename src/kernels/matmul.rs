//! Matrix products (`shaders/matmul_common.wgsl` with `matmul.wgsl` or `matmul_sg.wgsl`):
//! the kernel families, the choice between them per adapter class and shape, and the CPU
//! reference (the `matrixmultiply` GEMM with strided operands, so transposed reads cost nothing).

pub(crate) use super::matmul_config::MatmulConfig;
pub use super::matmul_config::{MatmulKernel, MatmulTiles};
use super::matmul_config::{BIG_GROUPS, NAIVE_BELOW_MACS, SUBGROUP_FROM_MACS};
use super::{par, slices, u, wgsl_params, BufId, Cx, Kernel, KernelDef, Launch, Real, Window2d, LOOP_BUDGET};
use crate::error::{Error, Result};

wgsl_params! {
    /// `Params` of the matmul families (`shaders/matmul_common.wgsl`).
    MatmulParams for "matmul", "matmul_sg" {
        m: u32,
        k: u32,
        n: u32,
        /// the slice k0 .. k1 of the inner dimension this dispatch sums
        k0: u32,
        k1: u32,
        /// element offsets of A, B and C of the first product of the batch
        a_off: u32,
        b_off: u32,
        c_off: u32,
        /// element strides from one product of the batch (workgroup z) to the next
        sa: u32,
        sb: u32,
        sc: u32,
        /// `IM2COL`: A is the window matrix of an NCHW image (channels, height, width), its
        /// columns K = cg·kh·kw and rows per group n·oh·ow
        w_c: u32,
        w_h: u32,
        w_w: u32,
        w_k: u32,
        w_rows: u32,
        /// output height and width, window height·width and width, channels per group
        w_oh: u32,
        w_ow: u32,
        w_kk: u32,
        w_kw: u32,
        w_cg: u32,
        /// stride, dilation and padding (height, width)
        w_sh: u32,
        w_sw: u32,
        w_dh: u32,
        w_dw: u32,
        w_ph: u32,
        w_pw: u32,
        /// the value read in the padding
        w_pad: f32,
    }
}

/// Slice of the inner dimension one dispatch of a matmul entry point may sum: `LOOP_BUDGET`
/// iterations of its k loop (4 k per iteration in the register kernels, 1 in the naive one);
/// the tile kernel runs several short loops per BK-deep stage, so it takes 2048 (a multiple of
/// every BK).
pub(crate) fn k_slice(entry: &str) -> usize {
    match entry {
        "matmul_naive" => LOOP_BUDGET,
        "matmul" | "matmul_bias_act" => 2048,
        _ => 4 * LOOP_BUDGET,
    }
}

/// The entry point with the layer epilogue (C, Z = C + b, H = f(Z)) of a matmul entry point.
pub(crate) fn epilogue_entry(entry: &str) -> Option<&'static str> {
    match entry {
        "matmul_sg" => Some("matmul_sg_bias_act"),
        "matmul" => Some("matmul_bias_act"),
        _ => None,
    }
}

/// Workgroup grid of a matmul with tw×th tiles of C.
fn matmul_grid(m: usize, k: usize, n: usize, tw: usize, th: usize, max_dim: u32) -> Result<[u32; 3]> {
    let (gx, gy) = (n.div_ceil(tw), m.div_ceil(th));
    if gx > max_dim as usize || gy > max_dim as usize {
        return Err(Error::LimitExceeded {
            what: format!("matmul {m}×{k}·{k}×{n} dispatch"),
            size: gx.max(gy) as u64,
            limit_name: "max_compute_workgroups_per_dimension",
            limit: max_dim as u64,
        });
    }
    Ok([gx.max(1) as u32, gy.max(1) as u32, 1])
}

/// A batch of products in one dispatch (workgroup z): product z reads A from element
/// `a_off + z·sa`, B from `b_off + z·sb` and writes C from `c_off + z·sc`; a stride of 0
/// broadcasts an operand. Two products must not write the same C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub count: usize,
    pub a_off: usize,
    pub b_off: usize,
    pub c_off: usize,
    pub sa: usize,
    pub sb: usize,
    pub sc: usize,
}

impl Batch {
    /// One product, every matrix at the start of its buffer.
    pub const ONE: Batch = Batch {
        count: 1,
        a_off: 0,
        b_off: 0,
        c_off: 0,
        sa: 0,
        sb: 0,
        sc: 0,
    };
}

/// out (+)= op(A)·op(B), A is m×k after the optional transpose, B is k×n; for each product of
/// `batch`. With `a_win`, `a` is an image and A its window matrix (an implicit GEMM: see
/// [`MatMul::a_win`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MatMul {
    pub a: BufId,
    pub b: BufId,
    pub out: BufId,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: bool,
    pub tb: bool,
    pub acc: bool,
    pub batch: Batch,
    /// A is the window matrix `[groups, n·oh·ow, cg·kh·kw]` of the image in `a` (what
    /// [`Im2col`](super::Im2col) would write), read from the image where the kernel loads it:
    /// offsets and strides of `batch` are in that matrix. The GPU runs it on the naive kernel or
    /// the tile kernel's scalar loads; the CPU materialises the matrix.
    pub a_win: Option<Window2d>,
}

/// The window fields of [`MatmulParams`] (zero without a window).
fn window_params(p: MatmulParams, win: Option<&Window2d>) -> MatmulParams {
    let Some(w) = win else { return p };
    let [_, c, h, wd] = w.image;
    let [_, rows, k] = w.cols_shape();
    let [oh, ow] = w.out_hw();
    MatmulParams {
        w_c: u(c),
        w_h: u(h),
        w_w: u(wd),
        w_k: u(k),
        w_rows: u(rows),
        w_oh: u(oh),
        w_ow: u(ow),
        w_kk: u(w.kernel[0] * w.kernel[1]),
        w_kw: u(w.kernel[1]),
        w_cg: u(w.group_channels()),
        w_sh: u(w.stride[0]),
        w_sw: u(w.stride[1]),
        w_dh: u(w.dilation[0]),
        w_dw: u(w.dilation[1]),
        w_ph: u(w.padding[0]),
        w_pw: u(w.padding[1]),
        w_pad: w.pad_value,
        ..p
    }
}

impl MatMul {
    /// The one dispatch over the whole inner dimension, kernel chosen for the shape.
    pub(crate) fn launch(&self, cx: &Cx) -> Result<Launch> {
        let MatMul {
            a,
            b: bb,
            out,
            m,
            k,
            n,
            ta,
            tb,
            acc,
            batch: bt,
            a_win,
        } = *self;
        let (mm, max_dim) = (cx.mm, cx.max_dim);
        let implicit = a_win.is_some();
        let p = MatmulParams {
            m: u(m),
            k: u(k),
            n: u(n),
            k0: 0,
            k1: u(k),
            a_off: u(bt.a_off),
            b_off: u(bt.b_off),
            c_off: u(bt.c_off),
            sa: u(bt.sa),
            sb: u(bt.sb),
            sc: u(bt.sc),
            ..Default::default()
        };
        let p = window_params(p, a_win.as_ref());
        // The vec4 paths read each product's A and B from a multiple of 4 floats; a window
        // matrix is read element by element (the naive kernel, or the tile kernel with AV = 0).
        let a4 = bt.a_off % 4 == 0 && bt.sa % 4 == 0 && !implicit;
        let b4 = bt.b_off % 4 == 0 && bt.sb % 4 == 0;
        // `matmul_reg` reads each operand as vec4s along its contiguous dimension;
        // `matmul_reg_any` cuts unaligned vec4s out of aligned pairs and runs every shape.
        // With A read transposed and m < 512, `matmul_reg` measured 3–13× slower than
        // `matmul_reg_any` on llvmpipe (256×256×256 dB, 256×128×16 dB); from m = 512 on it is
        // as fast or faster (benches/NOTES.md).
        let vec4_ok = k % 4 == 0 && (!ta || m % 4 == 0) && (tb || n % 4 == 0) && a4 && b4;
        // Under `Auto` the kernel also depends on the work: tiny products run the naive
        // kernel, and only large ones the subgroup kernel, whose compile time (seconds on
        // llvmpipe, at the first dispatch) the speed-up pays back only at large sizes
        // (benches/NOTES.md, "First run").
        let macs = m.saturating_mul(k).saturating_mul(n);
        let auto = mm.kernel == MatmulKernel::Auto;
        let naive = mm.kernel == MatmulKernel::Naive || (auto && macs < NAIVE_BELOW_MACS);
        let ops = vec![(4, a, true), (5, bb, true), (3, out, false)];
        let sg = mm.sg_max > 0 && vec4_ok && !naive && (!auto || macs >= SUBGROUP_FROM_MACS);
        let reg = match (naive || implicit, mm.reg) {
            (true, _) => None,
            (false, wg) => wg.map(|wg| mm.reg_shape(wg, m, n)),
        };
        let big = mm.tiles.0;
        let tile = if n.div_ceil(big.bn as usize) * m.div_ceil(big.bm as usize) >= BIG_GROUPS {
            big
        } else {
            mm.tiles.1
        };
        let mut l = match (sg, naive, reg) {
            (true, _, _) => {
                let g = mm.sg_shape(m, n);
                let groups = matmul_grid(m, k, n, 64, 32 * g as usize, max_dim)?;
                let mut l = Launch::new("matmul_sg", &p, ops, groups).with("SGN", g);
                l.shader = "matmul_sg";
                l
            }
            (_, true, _) => Launch::new(
                "matmul_naive",
                &p,
                vec![(1, a, true), (2, bb, true), (3, out, false)],
                matmul_grid(m, k, n, 16, 16, max_dim)?,
            ),
            (_, _, Some((x, y))) => {
                let entry = if vec4_ok && (!ta || m >= 512) {
                    "matmul_reg"
                } else {
                    "matmul_reg_any"
                };
                let groups = matmul_grid(m, k, n, 8 * x as usize, 8 * y as usize, max_dim)?;
                Launch::new(entry, &p, ops, groups).with("RWX", x).with("RWY", y)
            }
            (_, _, None) => {
                // vec4 loads along each operand's contiguous dimension where it is aligned.
                let av = a4 && if ta { m % 4 == 0 } else { k % 4 == 0 };
                let bv = b4 && if tb { k % 4 == 0 } else { n % 4 == 0 };
                let groups = matmul_grid(m, k, n, tile.bn as usize, tile.bm as usize, max_dim)?;
                Launch::new("matmul", &p, ops, groups)
                    .with("BM", tile.bm)
                    .with("BN", tile.bn)
                    .with("BK", tile.bk)
                    .with("TM", tile.tm)
                    .with("TN", tile.tn)
                    .with("AV", av as u32)
                    .with("BV", bv as u32)
            }
        };
        // TA and TB come first among the constants (as in the other entry points).
        l.groups[2] = u(bt.count);
        if bt != Batch::ONE {
            l.consts.push(("BATCHED", 1.0));
        }
        if acc {
            l.consts.push(("ACC", 1.0));
        }
        if implicit {
            l.consts.push(("IM2COL", 1.0));
        }
        l.consts
            .splice(0..0, [("TA", ta as u32 as f64), ("TB", tb as u32 as f64)]);
        Ok(l)
    }
}

impl KernelDef for MatMul {
    /// Split into dispatches of at most [`k_slice`] of the inner dimension each, every one after
    /// the first adding into C, and batches into dispatches of at most the grid's z limit.
    fn lower(&self, cx: &Cx) -> Result<Vec<Launch>> {
        let MatMul { m, k, n, acc, .. } = *self;
        let bt = self.batch;
        let mut out = Vec::new();
        for z0 in (0..bt.count.max(1)).step_by(cx.max_dim as usize) {
            let part = MatMul {
                batch: Batch {
                    count: (bt.count - z0).min(cx.max_dim as usize),
                    a_off: bt.a_off + z0 * bt.sa,
                    b_off: bt.b_off + z0 * bt.sb,
                    c_off: bt.c_off + z0 * bt.sc,
                    ..bt
                },
                ..self.clone()
            };
            let l = part.launch(cx)?;
            let parts = slices(k, k_slice(l.entry), &|| format!("matmul {m}×{k}·{k}×{n}"))?;
            let base: MatmulParams = bytemuck::cast_slice(&l.params)[0];
            let launches = l.split(parts.into_iter().map(|(k0, k1)| MatmulParams {
                k0: u(k0),
                k1: u(k1),
                ..base
            }));
            // Adding into C is a pipeline constant, not a parameter: the read of C before each
            // store doubles the epilogue's memory operations, which on llvmpipe (Mesa 25) was
            // most of a register kernel's compile time (2.3 of 2.4 s). Only pipelines that add
            // pay it.
            out.extend(launches.into_iter().enumerate().map(|(i, mut l)| {
                if i > 0 && !acc {
                    l.consts.push(("ACC", 1.0));
                }
                l
            }));
        }
        Ok(out)
    }

    #[inline(always)]
    fn run_cpu<T: Real>(&self, b: &mut [Vec<T>]) {
        let MatMul {
            a,
            b: bb,
            m,
            k,
            n,
            batch: bt,
            ref a_win,
            ..
        } = *self;
        // A window matrix is materialised here (the reference the GPU's implicit reads are
        // tested against).
        let cols = a_win.as_ref().map(|w| {
            let mut cols = vec![T::zero(); w.cols_shape().iter().product()];
            super::conv::im2col_into(w, &b[a], &mut cols);
            cols
        });
        super::with_out!(b, self.out, |o, b| {
            let av: &[T] = cols.as_deref().unwrap_or(&b[a]);
            let bv: &[T] = &b[bb];
            #[inline(always)]
            fn product<T: Real>(mm: &MatMul, av: &[T], bv: &[T], z: usize, c: &mut [T]) {
                let bt = &mm.batch;
                let (ao, bo) = (bt.a_off + z * bt.sa, bt.b_off + z * bt.sb);
                matmul(&av[ao..], &bv[bo..], c, mm.m, mm.k, mm.n, mm.ta, mm.tb, mm.acc);
            }
            let span = bt.c_off..bt.c_off + bt.count * bt.sc;
            if bt.count > 1 && bt.sc >= m * n && span.end <= o.len() {
                // Products with outputs of their own: runs of them, one per thread.
                par::rows(
                    &mut o[span],
                    bt.sc,
                    m * k * n / 32,
                    #[inline(always)]
                    |zs, run| {
                        for (i, z) in zs.enumerate() {
                            product(self, av, bv, z, &mut run[i * bt.sc..]);
                        }
                    },
                )
            } else {
                // One product, or products adding into one output (a broadcast operand's
                // gradient): in order.
                for z in 0..bt.count {
                    product(self, av, bv, z, &mut o[bt.c_off + z * bt.sc..]);
                }
            }
        })
    }
}

/// out (+)= op(A)·op(B); A is m×k (stored k×m when `ta`), B is k×n (stored n×k when `tb`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn matmul<T: Real>(
    a: &[T],
    b: &[T],
    out: &mut [T],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    acc: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && out.len() >= m * n,
        "matmul: buffers smaller than m×k, k×n, m×n"
    );
    if ta && !tb && m * n <= THIN_OUTPUT && k >= THIN_MIN_K {
        return thin_at_b(a, b, out, m, k, n, acc);
    }
    if !ta && (1..=16).contains(&n) && m >= SKINNY_MIN_M && (1..=SKINNY_MAX_K).contains(&k) {
        return if n <= 8 {
            skinny::<T, 8>(a, b, out, m, k, n, tb, acc)
        } else {
            skinny::<T, 16>(a, b, out, m, k, n, tb, acc)
        };
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    let beta = if acc { T::one() } else { T::zero() };
    // Runs of C's rows, one per thread where the product is worth it (a multiply-add costs about
    // a thirtieth of an elementwise operation), each by the single-threaded GEMM: a row of C is
    // the same sum over k whichever run computes it. Each run packs op(B) again, which is small
    // against its share of the product.
    par::rows(
        &mut out[..m * n],
        n,
        k * n / 32,
        #[inline(always)]
        |rows, run| {
            let a_first = if ta { rows.start } else { rows.start * k };
            // SAFETY: the assert above bounds every strided view inside its slice (rows of A from
            // `a_first` on are rows of the same view); `run` is the distinct &mut of these C rows.
            unsafe {
                T::gemm(
                    rows.len(),
                    k,
                    n,
                    T::one(),
                    a.as_ptr().add(a_first),
                    rsa,
                    csa,
                    b.as_ptr(),
                    rsb,
                    csb,
                    beta,
                    run.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        },
    )
}

/// Outputs up to this many elements with an inner dimension of at least [`THIN_MIN_K`] take
/// [`thin_at_b`]: a weight gradient Aᵀ·G of a thin layer (a convolution's first layer: 25 × 6
/// over 36,864 window rows) leaves a GEMM's micro-tiles mostly empty and packs all of A and G
/// for a handful of outputs.
const THIN_OUTPUT: usize = 512;
const THIN_MIN_K: usize = 2048;

/// Products of at least this many rows and at most 16 columns take [`skinny`] (a convolution's
/// forward: 36,864 window rows × 6 channels; a classifier's output layer), where a GEMM spends
/// most of its time packing A for a few columns of output.
const SKINNY_MIN_M: usize = 1024;
/// ... with an inner dimension of at most this many: each output is one running sum over k.
const SKINNY_MAX_K: usize = 4096;

/// out (+)= A·op(B) for A stored m×k and n ≤ W columns: op(B) copied once into k rows of W
/// (zero-padded; k·W values stay in cache), then each row of C is W running sums over its row of
/// A, a W-wide vector multiply-add per k.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn skinny<T: Real, const W: usize>(a: &[T], b: &[T], out: &mut [T], m: usize, k: usize, n: usize, tb: bool, acc: bool) {
    let mut bp = vec![T::zero(); k * W];
    for (kk, row) in bp.chunks_exact_mut(W).enumerate() {
        for (j, v) in row.iter_mut().take(n).enumerate() {
            *v = if tb { b[j * k + kk] } else { b[kk * n + j] };
        }
    }
    // Runs of rows, one per thread; in a run four rows at a time: four independent sums per
    // column (an add waits only for the one before it in its own sum) sharing each row of
    // op(B). Each row's sum runs over k in order however the rows are grouped.
    let bp = &bp[..];
    par::rows(
        &mut out[..m * n],
        n,
        k * n / 8,
        #[inline(always)]
        |rs, out| skinny_rows::<T, W>(&a[rs.start * k..rs.end * k], bp, out, rs.len(), k, n, acc),
    )
}

/// The rows of [`skinny`]: `m` rows of A times the packed op(B) `bp` into `out`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn skinny_rows<T: Real, const W: usize>(a: &[T], bp: &[T], out: &mut [T], m: usize, k: usize, n: usize, acc: bool) {
    let (a, out) = (&a[..m * k], &mut out[..m * n]);
    for (ar, orow) in a.chunks_exact(4 * k).zip(out.chunks_exact_mut(4 * n)) {
        let (a0, a1, a2, a3) = (&ar[..k], &ar[k..2 * k], &ar[2 * k..3 * k], &ar[3 * k..]);
        let (mut s0, mut s1, mut s2, mut s3) = ([T::zero(); W], [T::zero(); W], [T::zero(); W], [T::zero(); W]);
        for (kk, br) in bp.chunks_exact(W).enumerate() {
            let br: &[T; W] = br.try_into().expect("W values");
            let (v0, v1, v2, v3) = (a0[kk], a1[kk], a2[kk], a3[kk]);
            for j in 0..W {
                s0[j] += v0 * br[j];
                s1[j] += v1 * br[j];
                s2[j] += v2 * br[j];
                s3[j] += v3 * br[j];
            }
        }
        for (orow, sr) in orow.chunks_exact_mut(n).zip([&s0, &s1, &s2, &s3]) {
            for (o, &v) in orow.iter_mut().zip(sr) {
                super::put(o, v, acc);
            }
        }
    }
    // The last rows (m mod 4), one at a time.
    let done = m / 4 * 4;
    for (ar, orow) in a[done * k..].chunks_exact(k).zip(out[done * n..].chunks_exact_mut(n)) {
        let mut s = [T::zero(); W];
        for (&v, br) in ar.iter().zip(bp.chunks_exact(W)) {
            for j in 0..W {
                s[j] += v * br[j];
            }
        }
        for (o, &v) in orow.iter_mut().zip(&s) {
            super::put(o, v, acc);
        }
    }
}

/// out (+)= Aᵀ·B for A stored k×m and B stored k×n with a small m×n: one pass over the rows of
/// both, each row's outer product added into n accumulator rows of m (contiguous in A's row, so
/// the loop over m vectorises).
#[inline(always)]
fn thin_at_b<T: Real>(a: &[T], b: &[T], out: &mut [T], m: usize, k: usize, n: usize, acc: bool) {
    // Blocks of 256 rows summed on their own, then added up in order (as a GEMM's k blocks
    // are), so the rounding error grows with the number of blocks, not of rows. The blocks are
    // fixed, so computing them in runs, one per thread, gives the same bits.
    let nm = n * m;
    let mut blocks = vec![T::zero(); k.div_ceil(256) * nm];
    par::rows(
        &mut blocks,
        nm,
        256 * nm,
        #[inline(always)]
        |bs, run| {
            for (i, blk) in bs.enumerate() {
                let block = &mut run[i * nm..(i + 1) * nm];
                for p in blk * 256..(blk * 256 + 256).min(k) {
                    let ar = &a[p * m..(p + 1) * m];
                    let br = &b[p * n..(p + 1) * n];
                    for (j, &bj) in br.iter().enumerate() {
                        let s = &mut block[j * m..(j + 1) * m];
                        for i in 0..m {
                            s[i] += ar[i] * bj;
                        }
                    }
                }
            }
        },
    );
    let mut sums = vec![T::zero(); nm];
    for block in blocks.chunks_exact(nm.max(1)) {
        for (t, &v) in sums.iter_mut().zip(block) {
            *t += v;
        }
    }
    for i in 0..m {
        for j in 0..n {
            super::put(&mut out[i * n + j], sums[j * m + i], acc);
        }
    }
}

/// Shapes that reach every narrowed `matmul_reg` workgroup shape, aligned and not.
/// (64, 64, 128) and (65, 70, 33): mid-sized, where `Auto` takes the register kernel even
/// on adapters with the subgroup one; (4096, 4, 1024) reaches the subgroup kernel.
pub(crate) fn example_shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes = vec![(4, 4, 4), (3, 5, 7), (64, 64, 128), (65, 70, 33)];
    for m in [1, 8, 16, 32, 64, 128, 256, 512, 1024, 4096] {
        for n in [1, 9, 17, 33, 65, 129, 1024] {
            shapes.extend([(m, 4, n), (m, 5, n)]);
        }
    }
    shapes
}

/// Representative kernels: every shape of [`example_shapes`] with every transpose, one product
/// and (another pipeline: `BATCHED`) a batch of them; and products added into C (`ACC`).
pub(crate) fn examples() -> Vec<Kernel> {
    let mut ks = Vec::new();
    let batched = Batch {
        count: 3,
        a_off: 0,
        b_off: 0,
        c_off: 0,
        sa: 1 << 20,
        sb: 0,
        sc: 1 << 20,
    };
    let product = |(m, k, n), (ta, tb), acc, batch| -> Kernel {
        MatMul {
            a: 0,
            b: 1,
            out: 2,
            m,
            k,
            n,
            ta,
            tb,
            acc,
            batch,
            a_win: None,
        }
        .into()
    };
    let orientations = [(false, false), (false, true), (true, false), (true, true)];
    for (shape, batch) in example_shapes()
        .into_iter()
        .flat_map(|s| [(s, Batch::ONE), (s, batched)])
    {
        for t in orientations {
            ks.push(product(shape, t, false, batch));
        }
    }
    // Implicit GEMMs (`IM2COL = 1`): a convolution's forward (naive and tile kernels) and
    // weight gradient (A read transposed), one product and a batch of groups.
    let win = Window2d {
        image: [2, 4, 9, 7],
        kernel: [3, 2],
        stride: [2, 1],
        padding: [1, 1],
        dilation: [1, 2],
        groups: 2,
        pad_value: 0.0,
    };
    let [groups, rows, kw] = win.cols_shape();
    for (m, k, n, ta) in [
        (rows, kw, 3, false),
        (kw, rows, 3, true),
        (4096, kw, 64, false),
        (kw, 4096, 64, true),
    ] {
        for batch in [
            Batch::ONE,
            Batch {
                count: groups,
                sa: rows * kw,
                ..Batch::ONE
            },
        ] {
            ks.push(
                MatMul {
                    a: 0,
                    b: 1,
                    out: 2,
                    m,
                    k,
                    n,
                    ta,
                    tb: false,
                    acc: false,
                    batch,
                    a_win: Some(win),
                }
                .into(),
            );
        }
    }
    // The adding pipelines (`ACC = 1`), for every orientation of two shapes.
    for t in orientations {
        for shape in [(33, 17, 9), (64, 64, 64)] {
            ks.push(product(shape, t, true, Batch::ONE));
        }
    }
    ks
}

#[cfg(test)]
mod cpu_paths {
    use super::matmul;

    #[test]
    fn the_thin_weight_gradient_path_matches_the_definition() {
        for (m, k, n) in [(25, 36_864, 6), (1, 2048, 1), (9, 5000, 17), (512, 2048, 1)] {
            let a: Vec<f32> = (0..k * m).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729 % 997) as f32 / 498.5) - 1.0).collect();
            for acc in [false, true] {
                let mut out = vec![0.5f32; m * n];
                matmul(&a, &b, &mut out, m, k, n, true, false, acc);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = (0..k).map(|p| a[p * m + i] as f64 * b[p * n + j] as f64).sum::<f64>()
                            + if acc { 0.5 } else { 0.0 };
                        let got = out[i * n + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-5 * (k as f64).sqrt() + 1e-5 * want.abs(),
                            "{m}×{k}×{n} [{i},{j}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_skinny_path_matches_the_definition() {
        // Rows a multiple of 4 and not, 1..16 columns (8 and 16 wide), B read plain and
        // transposed, stored and added; and shapes either side of the path's bounds.
        let shapes = [
            (1024, 25, 6),
            (1027, 3, 16),
            (2049, 150, 9),
            (1025, 1, 1),
            (1024, 4096, 8),
            (1023, 5, 3),
            (1024, 4097, 2),
            (1024, 5, 17),
        ];
        for (m, k, n) in shapes {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729 % 997) as f32 / 498.5) - 1.0).collect();
            for tb in [false, true] {
                for acc in [false, true] {
                    let mut out = vec![0.5f32; m * n];
                    matmul(&a, &b, &mut out, m, k, n, false, tb, acc);
                    for i in 0..m {
                        for j in 0..n {
                            let bv = |p: usize| if tb { b[j * k + p] } else { b[p * n + j] } as f64;
                            let want: f64 =
                                (0..k).map(|p| a[i * k + p] as f64 * bv(p)).sum::<f64>() + if acc { 0.5 } else { 0.0 };
                            let got = out[i * n + j] as f64;
                            assert!(
                                (got - want).abs() < 1e-5 * (k as f64).sqrt() + 1e-5 * want.abs(),
                                "{m}×{k}×{n} tb={tb} acc={acc} [{i},{j}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
