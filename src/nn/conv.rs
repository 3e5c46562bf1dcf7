//! A 2-D convolution layer with PyTorch's parameter names, layout and initialisation.

use crate::data::Rng;
use crate::error::Result;
use crate::graph::{Conv2dOptions, Graph, NodeId};

/// `nn.Conv2d`: `{name}.weight` `[out, in / groups, kh, kw]` and `{name}.bias` `[out]`, both
/// drawn from U(−1/√fan_in, 1/√fan_in) with fan_in = (in / groups)·kh·kw, as PyTorch's default
/// initialisation does. The weight is in PyTorch's layout, so checkpoints need no conversion.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// The kernels, `[out_channels, in_channels / groups, kh, kw]`.
    pub weight: NodeId,
    /// The bias, `[out_channels]`.
    pub bias: NodeId,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

impl Conv2d {
    /// The parameters of a `kernel[0]`×`kernel[1]` convolution from `in_channels` to
    /// `out_channels`, initialised from `rng`. Errors (naming the layer) when `groups` does not
    /// divide both channel counts or a size is zero.
    pub fn new(
        g: &mut Graph,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        options: Conv2dOptions,
        rng: &mut Rng,
    ) -> Result<Conv2d> {
        let groups = options.groups;
        if groups == 0
            || !in_channels.is_multiple_of(groups)
            || !out_channels.is_multiple_of(groups)
            || in_channels == 0
            || out_channels == 0
            || kernel.contains(&0)
        {
            return Err(crate::Error::arg(
                "Conv2d::new",
                format!(
                    "{name}: {in_channels} → {out_channels} channels, kernel {kernel:?}, {groups} groups: sizes must be positive and the groups must divide both channel counts"
                ),
            ));
        }
        let shape = [out_channels, in_channels / groups, kernel[0], kernel[1]];
        let (wname, bname) = (format!("{name}.weight"), format!("{name}.bias"));
        g.check_new_parameters("Conv2d::new", &[(&wname, &shape), (&bname, &[out_channels])])?;
        let fan_in = shape[1] * kernel[0] * kernel[1];
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| (2.0 * rng.next_f32() - 1.0) * bound).collect() };
        let w = draw(shape.iter().product());
        let b = draw(out_channels);
        let len = g.len();
        let built = (|| {
            let weight = g.parameter(&wname, &shape, &w)?;
            let bias = g.parameter(&bname, &[out_channels], &b)?;
            Ok(Conv2d { weight, bias, options })
        })();
        built.inspect_err(|_| g.truncate_nodes(len))
    }

    /// The convolution of `x` (`[n, in_channels, h, w]`) plus the bias: `[n, out_channels, oh, ow]`.
    pub fn forward(&self, g: &mut Graph, x: NodeId) -> Result<NodeId> {
        g.conv2d(x, self.weight, Some(self.bias), self.options)
    }
}
