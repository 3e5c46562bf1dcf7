//! Transpose, reshape, detach (kernels: `shaders/misc.wgsl`), permute, narrow and concat
//! (strided copies: `shaders/layout.wgsl`).

use super::{numel, pad4, Arg, GradTarget, MAX_RANK};
use crate::error::{Error, Result};
use crate::kernels as kn;
use crate::kernels::{BufId, Kernel, View};

pub(super) fn transpose_shape(x: &[usize]) -> Result<Vec<usize>> {
    if x.len() != 2 {
        return Err(Error::invalid_shape("transpose", x, "expects a matrix (rank 2)"));
    }
    Ok(vec![x[1], x[0]])
}

pub(super) fn transpose_forward(x: Arg, out: Arg) -> Vec<Kernel> {
    vec![Kernel::Transpose(kn::Transpose {
        x: x.buf,
        out: out.buf,
        rows: x.shape[0],
        cols: x.shape[1],
        acc: false,
    })]
}

/// d_x = gᵀ, where g has the transposed shape cols×rows.
pub(super) fn transpose_vjp(x: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dx| {
        Kernel::Transpose(kn::Transpose {
            x: g,
            out: dx.buf,
            rows: x.shape[1],
            cols: x.shape[0],
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}

pub(super) fn copy(x: BufId, out: BufId, len: usize, acc: bool) -> Vec<Kernel> {
    vec![Kernel::Copy(kn::Copy { x, out, len, acc })]
}

pub(super) fn reshape_vjp(x: Arg, g: usize, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    t[0].map(|dx| {
        Kernel::Copy(kn::Copy {
            x: g,
            out: dx.buf,
            len: numel(x.shape),
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}

/// `perm` (its first `x.len()` entries) must be a permutation of the axes of `x`.
pub(super) fn permute_shape(x: &[usize], perm: &[usize]) -> Result<Vec<usize>> {
    let mut seen = [false; MAX_RANK];
    for &a in perm {
        if a >= x.len() || std::mem::replace(&mut seen[a], true) {
            return Err(Error::invalid_shape(
                "permute",
                x,
                format!("{perm:?} is not an order of the {} axes", x.len()),
            ));
        }
    }
    if perm.len() != x.len() {
        return Err(Error::invalid_shape(
            "permute",
            x,
            format!("{perm:?} names {} axes, the tensor has {}", perm.len(), x.len()),
        ));
    }
    Ok(perm.iter().map(|&a| x[a]).collect())
}

/// The view of contiguous `x` read in the order of `perm`: axis d of the result is axis
/// perm[d] of x.
fn permuted_view(x: &[usize], perm: &[usize]) -> View {
    let (xs, lead) = (pad4(x), 4 - x.len());
    let contiguous = View::contiguous(&xs);
    let mut strides = [0; 4];
    for (d, &a) in perm.iter().enumerate() {
        strides[lead + d] = contiguous.strides[lead + a];
    }
    View { offset: 0, strides }
}

pub(super) fn permute_forward(x: Arg, perm: &[usize], out: Arg) -> Vec<Kernel> {
    let shape = pad4(out.shape);
    vec![Kernel::StridedCopy(kn::StridedCopy {
        x: x.buf,
        out: out.buf,
        shape,
        x_view: permuted_view(x.shape, perm),
        out_view: View::contiguous(&shape),
        acc: false,
    })]
}

/// d_x (+)= g permuted back: g's element at index i goes to x's element at the permuted index.
pub(super) fn permute_vjp(x: Arg, perm: &[usize], out: Arg, g: BufId, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let shape = pad4(out.shape);
    t[0].map(|dx| {
        Kernel::StridedCopy(kn::StridedCopy {
            x: g,
            out: dx.buf,
            shape,
            x_view: View::contiguous(&shape),
            out_view: permuted_view(x.shape, perm),
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}

pub(super) fn narrow_shape(x: &[usize], axis: usize, start: usize, len: usize) -> Result<Vec<usize>> {
    if axis >= x.len() {
        return Err(Error::invalid_shape(
            "narrow",
            x,
            format!("axis {axis} is out of range for rank {}", x.len()),
        ));
    }
    if len == 0 || start.checked_add(len).is_none_or(|end| end > x[axis]) {
        return Err(Error::invalid_shape(
            "narrow",
            x,
            format!(
                "elements {start}..{} of axis {axis} (extent {})",
                start.saturating_add(len),
                x[axis]
            ),
        ));
    }
    let mut s = x.to_vec();
    s[axis] = len;
    Ok(s)
}

/// The view of the elements `start..` along `axis` of a contiguous tensor of shape `full`.
fn slice_view(full: &[usize], axis: usize, start: usize) -> View {
    let (fs, lead) = (pad4(full), 4 - full.len());
    let mut v = View::contiguous(&fs);
    v.offset = start * v.strides[lead + axis];
    v
}

pub(super) fn narrow_forward(x: Arg, axis: usize, start: usize, out: Arg) -> Vec<Kernel> {
    let shape = pad4(out.shape);
    vec![Kernel::StridedCopy(kn::StridedCopy {
        x: x.buf,
        out: out.buf,
        shape,
        x_view: slice_view(x.shape, axis, start),
        out_view: View::contiguous(&shape),
        acc: false,
    })]
}

/// d_x (+)= g placed at `start..` along `axis`, zero elsewhere.
pub(super) fn narrow_vjp(
    x: Arg,
    axis: usize,
    start: usize,
    out: Arg,
    g: BufId,
    t: &[Option<GradTarget>],
) -> Vec<Kernel> {
    let Some(dx) = t[0] else { return vec![] };
    let shape = pad4(out.shape);
    let mut ks = Vec::new();
    if !dx.acc {
        ks.push(Kernel::Fill(kn::Fill {
            out: dx.buf,
            len: numel(x.shape),
            value: 0.0,
            acc: false,
        }));
    }
    ks.push(Kernel::StridedCopy(kn::StridedCopy {
        x: g,
        out: dx.buf,
        shape,
        x_view: View::contiguous(&shape),
        out_view: slice_view(x.shape, axis, start),
        acc: true,
    }));
    ks
}

pub(super) fn concat_shape(xs: &[&[usize]], axis: usize) -> Result<Vec<usize>> {
    let first = xs[0];
    if axis >= first.len() {
        return Err(Error::invalid_shape(
            "concat",
            first,
            format!("axis {axis} is out of range for rank {}", first.len()),
        ));
    }
    let mut out = first.to_vec();
    for x in &xs[1..] {
        let same_elsewhere =
            x.len() == first.len() && x.iter().zip(first).enumerate().all(|(d, (a, b))| d == axis || a == b);
        if !same_elsewhere {
            return Err(Error::shape("concat", first, x));
        }
        out[axis] += x[axis];
    }
    Ok(out)
}

/// Each input copied into its slice of the output along `axis`.
pub(super) fn concat_forward(xs: &[Arg], axis: usize, out: Arg) -> Vec<Kernel> {
    let mut start = 0;
    xs.iter()
        .map(|x| {
            let shape = pad4(x.shape);
            let k = Kernel::StridedCopy(kn::StridedCopy {
                x: x.buf,
                out: out.buf,
                shape,
                x_view: View::contiguous(&shape),
                out_view: slice_view(out.shape, axis, start),
                acc: false,
            });
            start += x.shape[axis];
            k
        })
        .collect()
}

/// d_x_j (+)= the slice of g that x_j was copied to.
pub(super) fn concat_vjp(xs: &[Arg], axis: usize, out: Arg, g: BufId, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let mut start = 0;
    let mut ks = Vec::new();
    for (x, target) in xs.iter().zip(t) {
        if let Some(dx) = target {
            let shape = pad4(x.shape);
            ks.push(Kernel::StridedCopy(kn::StridedCopy {
                x: g,
                out: dx.buf,
                shape,
                x_view: slice_view(out.shape, axis, start),
                out_view: View::contiguous(&shape),
                acc: dx.acc,
            }));
        }
        start += x.shape[axis];
    }
    ks
}

/// Broadcasting `x` to `to` (PyTorch's `expand`): trailing axes aligned, extents equal or 1.
pub(super) fn expand_shape(x: &[usize], to: &[usize]) -> Result<Vec<usize>> {
    let fits = to.len() >= x.len() && x.iter().zip(&to[to.len() - x.len()..]).all(|(&a, &b)| a == b || a == 1);
    if !fits {
        return Err(Error::shape("expand", x, to));
    }
    Ok(to.to_vec())
}

pub(super) fn expand_forward(x: Arg, out: Arg) -> Vec<Kernel> {
    let shape = pad4(out.shape);
    let xs = pad4(x.shape);
    let mut x_view = View::contiguous(&xs);
    for (stride, &extent) in x_view.strides.iter_mut().zip(&xs) {
        if extent == 1 {
            *stride = 0;
        }
    }
    vec![Kernel::StridedCopy(kn::StridedCopy {
        x: x.buf,
        out: out.buf,
        shape,
        x_view,
        out_view: View::contiguous(&shape),
        acc: false,
    })]
}

/// d_x (+)= g summed over the broadcast axes: the VJP of `x + x'` with respect to x, where both
/// have x's shape and the sum has the expanded one.
pub(super) fn expand_vjp(x: Arg, out: Arg, g: BufId, t: &[Option<GradTarget>]) -> Vec<Kernel> {
    let xs = pad4(x.shape);
    let os = pad4(out.shape);
    t[0].map(|dx| {
        Kernel::BinaryBackward(kn::BinaryBackward {
            op: kn::BinaryOp::Add,
            a: x.buf,
            b: x.buf,
            g,
            out: dx.buf,
            bc: kn::Bcast {
                out: os,
                a_shape: xs,
                b_shape: xs,
            },
            which: 0,
            acc: dx.acc,
        })
    })
    .into_iter()
    .collect()
}
