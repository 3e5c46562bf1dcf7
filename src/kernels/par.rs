//! The CPU kernels' parallel loops.
//!
//! A kernel whose output is a sequence of rows hands its row loop to [`rows`], which cuts the
//! output into as many runs of whole rows as rayon's pool has threads (the global pool, or the
//! one the caller runs wgrad in) and runs the same loop on each run; GEMMs cut their rows of C
//! the same way (`matmul::matmul`, each run by the single-threaded GEMM). Every row is computed
//! by the same code in the same order whatever the split, so results are bit-identical for any
//! thread count; small kernels (less than [`MIN_WORK`] element operations) stay on the calling
//! thread, where handing work over would cost more than it saves. `RAYON_NUM_THREADS=1` makes
//! every loop serial, as it is in the browser (wasm32).
//!
//! Kernels run from a build for AVX2 + FMA where the CPU has them, entered through
//! [`in_wide_build`]: by the executor for each kernel (`CpuExecutor::exec`), and here for each
//! run another thread takes. Pass a loop body as an `#[inline(always)]` closure: it is then
//! compiled into that build on every thread.

use std::ops::Range;

/// Element operations (roughly) below which a loop runs on the calling thread: waking another
/// thread costs microseconds, which this much work repays.
pub(crate) const MIN_WORK: usize = 1 << 15;

/// Calls `f(rows, run)` for runs of whole rows of `out` (`row_len` elements each; `run` is
/// `out[rows.start·row_len .. rows.end·row_len]`), in parallel when the rows hold at least
/// [`MIN_WORK`] operations at `work_per_row` each. `out.len()` must be a multiple of `row_len`.
#[inline(always)]
pub(crate) fn rows<T: Send, F>(out: &mut [T], row_len: usize, work_per_row: usize, f: F)
where
    F: Fn(Range<usize>, &mut [T]) + Sync,
{
    let n_rows = out.len().checked_div(row_len).unwrap_or(0);
    debug_assert_eq!(n_rows * row_len, out.len(), "par::rows: a partial row");
    let tasks = tasks(n_rows, n_rows.saturating_mul(work_per_row.max(1)));
    if tasks <= 1 {
        return f(0..n_rows, out);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        let per = n_rows.div_ceil(tasks);
        out.par_chunks_mut(per * row_len).enumerate().for_each(|(i, run)| {
            let start = i * per;
            in_wide_build(
                #[inline(always)]
                || f(start..start + run.len() / row_len, run),
            )
        });
    }
}

/// [`rows`] for a kernel writing two outputs with rows in step (`a_len` and `b_len` elements
/// per row): `f(rows, run_a, run_b)`.
#[inline(always)]
pub(crate) fn rows2<T: Send, F>(a: &mut [T], a_len: usize, b: &mut [T], b_len: usize, work_per_row: usize, f: F)
where
    F: Fn(Range<usize>, &mut [T], &mut [T]) + Sync,
{
    let n_rows = a.len().checked_div(a_len).unwrap_or(0);
    debug_assert_eq!(
        (n_rows * a_len, n_rows * b_len),
        (a.len(), b.len()),
        "par::rows2: partial rows"
    );
    let tasks = tasks(n_rows, n_rows.saturating_mul(work_per_row.max(1)));
    if tasks <= 1 || b_len == 0 {
        return f(0..n_rows, a, b);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        let per = n_rows.div_ceil(tasks);
        let runs = a.par_chunks_mut(per * a_len).zip(b.par_chunks_mut(per * b_len));
        runs.enumerate().for_each(|(i, (ra, rb))| {
            let start = i * per;
            in_wide_build(
                #[inline(always)]
                || f(start..start + ra.len() / a_len, ra, rb),
            )
        });
    }
}

/// The threads the CPU backend's loops use: rayon's (its global pool, sized by
/// `RAYON_NUM_THREADS`, else one per core; or the pool a caller runs wgrad in); 1 in a browser.
pub(crate) fn threads() -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
}

/// How many runs to cut `n` rows holding `work` operations into.
#[inline(always)]
fn tasks(n: usize, work: usize) -> usize {
    if work < MIN_WORK {
        1
    } else {
        threads().min(n)
    }
}

/// Runs `f` from the build for AVX2 + FMA where the CPU has those (x86-64), else as it is: the
/// CPU backend's one way into that build (the executor enters it for each kernel, [`rows`] for
/// each run another thread takes). Pass `f` as an `#[inline(always)]` closure, so that its body
/// is compiled into that build.
#[inline(always)]
pub(crate) fn in_wide_build<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU reports AVX2 and FMA.
        return unsafe { wide(f) };
    }
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_visited_once_with_its_own_run() {
        for (n_rows, row_len, work) in [(0, 3, 1), (1, 5, 1), (7, 3, MIN_WORK), (1000, 17, MIN_WORK)] {
            let mut out = vec![0usize; n_rows * row_len];
            rows(&mut out, row_len, work, |rs, run| {
                assert_eq!(run.len(), rs.len() * row_len);
                for (i, r) in rs.enumerate() {
                    for v in &mut run[i * row_len..(i + 1) * row_len] {
                        *v += r + 1;
                    }
                }
            });
            let want: Vec<usize> = (0..n_rows * row_len).map(|i| i / row_len + 1).collect();
            assert_eq!(out, want, "{n_rows} rows of {row_len}");
            let (mut a, mut b) = (vec![0usize; n_rows * row_len], vec![0usize; n_rows]);
            rows2(&mut a, row_len, &mut b, 1, work, |rs, ra, rb| {
                assert_eq!((ra.len(), rb.len()), (rs.len() * row_len, rs.len()));
                for (i, r) in rs.enumerate() {
                    ra[i * row_len..(i + 1) * row_len].fill(r + 1);
                    rb[i] = r + 1;
                }
            });
            assert_eq!(a, want);
            assert_eq!(b, (1..=n_rows).collect::<Vec<_>>());
        }
    }
}
