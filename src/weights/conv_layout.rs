//! The convolution weight layout that lets burn block a quantized convolution along its input
//! channels on the GPU: `[out, in, kh, kw]` (PyTorch's order) stored as `[out, kw, kh, in]`.
//! Packages store q8/q4 convolutions this way (`package::quant`, layout token `in-last`), and
//! `weights::on_device` quantizes into it.

/// A convolution weight `[out, in, kh, kw]` (PyTorch order) in the order `[out, kw, kh, in]`,
/// so that row blocks run along the input channels — the one axis burn can block a convolution
/// weight along on the GPU (`weights::on_device`): q8 convolutions then reach the GPU unchanged.
pub fn in_channels_last(shape: &[usize], values: &[f32]) -> Vec<f32> {
    permute_in_channels(shape, values, true)
}

/// The inverse of [`in_channels_last`].
pub fn in_channels_back(shape: &[usize], values: &[f32]) -> Vec<f32> {
    permute_in_channels(shape, values, false)
}

fn permute_in_channels(shape: &[usize], values: &[f32], to_last: bool) -> Vec<f32> {
    let (o_n, i_n, kh_n, kw_n) = (shape[0], shape[1], shape[2], shape[3]);
    let mut out = vec![0f32; values.len()];
    for o in 0..o_n {
        for i in 0..i_n {
            for kh in 0..kh_n {
                for kw in 0..kw_n {
                    let torch = ((o * i_n + i) * kh_n + kh) * kw_n + kw;
                    let last = ((o * kw_n + kw) * kh_n + kh) * i_n + i;
                    if to_last {
                        out[last] = values[torch];
                    } else {
                        out[torch] = values[last];
                    }
                }
            }
        }
    }
    out
}
