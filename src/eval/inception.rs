//! The FID Inception-v3 in burn: pytorch-fid's `InceptionV3` with `use_fid_inception=True` up to
//! its 2048 pool features (block 3), the network behind every published FID. Its inputs are
//! pytorch-fid's: RGB in [0, 1] (a gray image is its gray level on three channels), resized to
//! 299×299 by bilinear interpolation (`align_corners=False`, no antialiasing), scaled to [−1, 1].
//!
//! Weights: the standard FID weights (`pt_inception-2015-12-05-6726825d.pth`, pytorch-fid's
//! release) converted to safetensors with their own names (`Mixed_5b.branch1x1.conv.weight`,
//! `….bn.running_var`, …; see docs/assessment.md for the one-line conversion). Batch
//! normalisation (eps 0.001, inference statistics) is folded into each convolution at load.

use std::collections::BTreeMap;

use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::imaging::{RgbImage, interpolate_bilinear};
use crate::weights::safetensors;

/// The length of a feature vector (pool3).
pub const FEATURES: usize = 2048;
/// The side every image is resized to.
pub const INPUT_SIDE: usize = 299;
/// BatchNorm2d's epsilon in torchvision's `BasicConv2d`.
const BN_EPS: f64 = 0.001;

/// One `BasicConv2d` (convolution without bias, batch normalisation, ReLU) as the weights file
/// names and shapes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvSpec {
    pub name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: usize,
    pub padding: [usize; 2],
}

impl ConvSpec {
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels, self.kernel[0], self.kernel[1]]
    }
}

/// The weights of one `BasicConv2d`, as stored.
pub struct ConvWeights {
    pub weight: Vec<f32>,
    pub bn_weight: Vec<f32>,
    pub bn_bias: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
}

/// A convolution with its batch normalisation folded in, followed by ReLU.
struct Conv {
    weight: Tensor<4>,
    bias: Tensor<1>,
    options: ConvOptions<2>,
}

impl Conv {
    fn new(spec: &ConvSpec, w: ConvWeights, device: &Device) -> Result<Self, String> {
        let c = spec.out_channels;
        let per_channel = spec.weight_shape()[1..].iter().product::<usize>();
        for (what, len, expected) in [
            ("conv.weight", w.weight.len(), c * per_channel),
            ("bn.weight", w.bn_weight.len(), c),
            ("bn.bias", w.bn_bias.len(), c),
            ("bn.running_mean", w.running_mean.len(), c),
            ("bn.running_var", w.running_var.len(), c),
        ] {
            if len != expected {
                return Err(format!("{}.{what}: {len} values, expected {expected} (shape of the FID Inception)", spec.name));
            }
        }
        let mut weight = Vec::with_capacity(w.weight.len());
        let mut bias = Vec::with_capacity(c);
        for o in 0..c {
            let scale = f64::from(w.bn_weight[o]) / (f64::from(w.running_var[o]) + BN_EPS).sqrt();
            weight.extend(w.weight[o * per_channel..(o + 1) * per_channel].iter().map(|&x| (f64::from(x) * scale) as f32));
            bias.push((f64::from(w.bn_bias[o]) - f64::from(w.running_mean[o]) * scale) as f32);
        }
        Ok(Self {
            weight: Tensor::from_data(TensorData::new(weight, spec.weight_shape()), device),
            bias: Tensor::from_data(TensorData::new(bias, [c]), device),
            options: ConvOptions::new([spec.stride; 2], spec.padding, [1, 1], 1),
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(conv2d(x, self.weight.clone(), Some(self.bias.clone()), self.options.clone()))
    }
}

/// One step of a branch of an Inception block.
enum Op {
    Conv(Box<Conv>),
    /// Two convolutions of the same input, concatenated (InceptionE's 1×3 and 3×1).
    Split(Box<[Conv; 2]>),
    /// 3×3 average pooling, stride 1, padding 1, padded values not counted.
    AvgPool,
    /// 3×3 max pooling, stride 1, padding 1.
    MaxPoolSame,
    /// 3×3 max pooling, stride 2.
    MaxPoolDown,
}

impl Op {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Op::Conv(conv) => conv.forward(x),
            Op::Split(pair) => Tensor::cat(vec![pair[0].forward(x.clone()), pair[1].forward(x)], 1),
            Op::AvgPool => avg_pool2d(x, AvgPoolOptions::new([3, 3]).with_stride([1, 1]).with_padding([1, 1]).with_count_include_pad(false)),
            Op::MaxPoolSame => max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([1, 1]).with_padding([1, 1])),
            Op::MaxPoolDown => max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2])),
        }
    }
}

/// A block: branches of the same input, concatenated along channels (the stem is one block of
/// one branch).
struct Block {
    branches: Vec<Vec<Op>>,
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let outputs: Vec<Tensor<4>> = self.branches.iter().map(|ops| ops.iter().fold(x.clone(), |x, op| op.forward(x))).collect();
        if outputs.len() == 1 { outputs.into_iter().next().expect("one branch") } else { Tensor::cat(outputs, 1) }
    }
}

/// Where the weights of each convolution come from, asked in the order torchvision registers
/// the modules (`named_modules()`).
pub trait WeightSource {
    fn conv(&mut self, spec: &ConvSpec) -> Result<ConvWeights, String>;
}

/// The weights of a safetensors file, by name.
struct FromFile<'a>(BTreeMap<String, safetensors::View<'a>>);

impl WeightSource for FromFile<'_> {
    fn conv(&mut self, spec: &ConvSpec) -> Result<ConvWeights, String> {
        let get = |suffix: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let key = format!("{}.{suffix}", spec.name);
            let view = self.0.get(&key).ok_or_else(|| format!("no tensor {key}: not the FID Inception weights (pt_inception-2015-12-05)"))?;
            if view.shape != shape {
                return Err(format!("{key} has shape {:?}, the FID Inception's is {shape:?}", view.shape));
            }
            view.to_f32()
        };
        let c = [spec.out_channels];
        Ok(ConvWeights {
            weight: get("conv.weight", &spec.weight_shape())?,
            bn_weight: get("bn.weight", &c)?,
            bn_bias: get("bn.bias", &c)?,
            running_mean: get("bn.running_mean", &c)?,
            running_var: get("bn.running_var", &c)?,
        })
    }
}

/// Builds blocks, asking `source` for each convolution in order.
struct Builder<'a> {
    source: &'a mut dyn WeightSource,
    device: &'a Device,
    specs: Vec<ConvSpec>,
}

impl Builder<'_> {
    fn conv(&mut self, name: String, in_channels: usize, out_channels: usize, kernel: [usize; 2], stride: usize, padding: [usize; 2]) -> Result<Conv, String> {
        let spec = ConvSpec { name, in_channels, out_channels, kernel, stride, padding };
        let weights = self.source.conv(&spec)?;
        let conv = Conv::new(&spec, weights, self.device)?;
        self.specs.push(spec);
        Ok(conv)
    }

    /// A `kernel`×`kernel` convolution as an op.
    fn op(&mut self, name: String, cin: usize, cout: usize, kernel: [usize; 2], stride: usize, padding: [usize; 2]) -> Result<Op, String> {
        Ok(Op::Conv(Box::new(self.conv(name, cin, cout, kernel, stride, padding)?)))
    }

    fn stem(&mut self) -> Result<[Block; 2], String> {
        let first = vec![
            self.op("Conv2d_1a_3x3".into(), 3, 32, [3, 3], 2, [0, 0])?,
            self.op("Conv2d_2a_3x3".into(), 32, 32, [3, 3], 1, [0, 0])?,
            self.op("Conv2d_2b_3x3".into(), 32, 64, [3, 3], 1, [1, 1])?,
            Op::MaxPoolDown,
        ];
        let second =
            vec![self.op("Conv2d_3b_1x1".into(), 64, 80, [1, 1], 1, [0, 0])?, self.op("Conv2d_4a_3x3".into(), 80, 192, [3, 3], 1, [0, 0])?, Op::MaxPoolDown];
        Ok([Block { branches: vec![first] }, Block { branches: vec![second] }])
    }

    /// FIDInceptionA (Mixed_5b–5d).
    fn a(&mut self, p: &str, cin: usize, pool_features: usize) -> Result<Block, String> {
        let n = |s: &str| format!("{p}.{s}");
        Ok(Block {
            branches: vec![
                vec![self.op(n("branch1x1"), cin, 64, [1, 1], 1, [0, 0])?],
                vec![self.op(n("branch5x5_1"), cin, 48, [1, 1], 1, [0, 0])?, self.op(n("branch5x5_2"), 48, 64, [5, 5], 1, [2, 2])?],
                vec![
                    self.op(n("branch3x3dbl_1"), cin, 64, [1, 1], 1, [0, 0])?,
                    self.op(n("branch3x3dbl_2"), 64, 96, [3, 3], 1, [1, 1])?,
                    self.op(n("branch3x3dbl_3"), 96, 96, [3, 3], 1, [1, 1])?,
                ],
                vec![Op::AvgPool, self.op(n("branch_pool"), cin, pool_features, [1, 1], 1, [0, 0])?],
            ],
        })
    }

    /// InceptionB (Mixed_6a).
    fn b(&mut self, p: &str, cin: usize) -> Result<Block, String> {
        let n = |s: &str| format!("{p}.{s}");
        Ok(Block {
            branches: vec![
                vec![self.op(n("branch3x3"), cin, 384, [3, 3], 2, [0, 0])?],
                vec![
                    self.op(n("branch3x3dbl_1"), cin, 64, [1, 1], 1, [0, 0])?,
                    self.op(n("branch3x3dbl_2"), 64, 96, [3, 3], 1, [1, 1])?,
                    self.op(n("branch3x3dbl_3"), 96, 96, [3, 3], 2, [0, 0])?,
                ],
                vec![Op::MaxPoolDown],
            ],
        })
    }

    /// FIDInceptionC (Mixed_6b–6e).
    fn c(&mut self, p: &str, cin: usize, c7: usize) -> Result<Block, String> {
        let n = |s: &str| format!("{p}.{s}");
        let (row, column) = ([1, 7], [7, 1]);
        let (row_pad, column_pad) = ([0, 3], [3, 0]);
        Ok(Block {
            branches: vec![
                vec![self.op(n("branch1x1"), cin, 192, [1, 1], 1, [0, 0])?],
                vec![
                    self.op(n("branch7x7_1"), cin, c7, [1, 1], 1, [0, 0])?,
                    self.op(n("branch7x7_2"), c7, c7, row, 1, row_pad)?,
                    self.op(n("branch7x7_3"), c7, 192, column, 1, column_pad)?,
                ],
                vec![
                    self.op(n("branch7x7dbl_1"), cin, c7, [1, 1], 1, [0, 0])?,
                    self.op(n("branch7x7dbl_2"), c7, c7, column, 1, column_pad)?,
                    self.op(n("branch7x7dbl_3"), c7, c7, row, 1, row_pad)?,
                    self.op(n("branch7x7dbl_4"), c7, c7, column, 1, column_pad)?,
                    self.op(n("branch7x7dbl_5"), c7, 192, row, 1, row_pad)?,
                ],
                vec![Op::AvgPool, self.op(n("branch_pool"), cin, 192, [1, 1], 1, [0, 0])?],
            ],
        })
    }

    /// InceptionD (Mixed_7a).
    fn d(&mut self, p: &str, cin: usize) -> Result<Block, String> {
        let n = |s: &str| format!("{p}.{s}");
        Ok(Block {
            branches: vec![
                vec![self.op(n("branch3x3_1"), cin, 192, [1, 1], 1, [0, 0])?, self.op(n("branch3x3_2"), 192, 320, [3, 3], 2, [0, 0])?],
                vec![
                    self.op(n("branch7x7x3_1"), cin, 192, [1, 1], 1, [0, 0])?,
                    self.op(n("branch7x7x3_2"), 192, 192, [1, 7], 1, [0, 3])?,
                    self.op(n("branch7x7x3_3"), 192, 192, [7, 1], 1, [3, 0])?,
                    self.op(n("branch7x7x3_4"), 192, 192, [3, 3], 2, [0, 0])?,
                ],
                vec![Op::MaxPoolDown],
            ],
        })
    }

    /// FIDInceptionE_1 (Mixed_7b, average pooling) and FIDInceptionE_2 (Mixed_7c, max pooling).
    fn e(&mut self, p: &str, cin: usize, max_pool: bool) -> Result<Block, String> {
        let n = |s: &str| format!("{p}.{s}");
        let branch1x1 = vec![self.op(n("branch1x1"), cin, 320, [1, 1], 1, [0, 0])?];
        let branch3x3 = vec![
            self.op(n("branch3x3_1"), cin, 384, [1, 1], 1, [0, 0])?,
            Op::Split(Box::new([self.conv(n("branch3x3_2a"), 384, 384, [1, 3], 1, [0, 1])?, self.conv(n("branch3x3_2b"), 384, 384, [3, 1], 1, [1, 0])?])),
        ];
        let branch3x3dbl = vec![
            self.op(n("branch3x3dbl_1"), cin, 448, [1, 1], 1, [0, 0])?,
            self.op(n("branch3x3dbl_2"), 448, 384, [3, 3], 1, [1, 1])?,
            Op::Split(Box::new([self.conv(n("branch3x3dbl_3a"), 384, 384, [1, 3], 1, [0, 1])?, self.conv(n("branch3x3dbl_3b"), 384, 384, [3, 1], 1, [1, 0])?])),
        ];
        let pool = if max_pool { Op::MaxPoolSame } else { Op::AvgPool };
        let branch_pool = vec![pool, self.op(n("branch_pool"), cin, 192, [1, 1], 1, [0, 0])?];
        Ok(Block { branches: vec![branch1x1, branch3x3, branch3x3dbl, branch_pool] })
    }
}

/// The FID Inception-v3 up to its pool features.
pub struct FidInception {
    blocks: Vec<Block>,
    device: Device,
    /// The convolutions in the order their weights were read.
    pub specs: Vec<ConvSpec>,
}

impl FidInception {
    pub fn build(source: &mut dyn WeightSource, device: &Device) -> Result<Self, String> {
        let mut b = Builder { source, device, specs: Vec::new() };
        let mut blocks: Vec<Block> = b.stem()?.into();
        blocks.push(b.a("Mixed_5b", 192, 32)?);
        blocks.push(b.a("Mixed_5c", 256, 64)?);
        blocks.push(b.a("Mixed_5d", 288, 64)?);
        blocks.push(b.b("Mixed_6a", 288)?);
        for (name, c7) in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)] {
            blocks.push(b.c(name, 768, c7)?);
        }
        blocks.push(b.d("Mixed_7a", 768)?);
        blocks.push(b.e("Mixed_7b", 1280, false)?);
        blocks.push(b.e("Mixed_7c", 2048, true)?);
        let specs = b.specs;
        Ok(Self { blocks, device: device.clone(), specs })
    }

    /// Loads the FID weights from a safetensors file's bytes (keys as in pytorch-fid's file;
    /// others, such as `fc.*` and `num_batches_tracked`, are ignored).
    pub fn from_safetensors(bytes: &[u8], device: &Device) -> Result<Self, String> {
        let file = safetensors::parse(bytes)?;
        let mut source = FromFile(file.tensors.into_iter().map(|view| (view.name.clone(), view)).collect());
        Self::build(&mut source, device)
    }

    /// The pool features of a batch of images (any sizes: each is resized to 299×299).
    pub fn features(&self, images: &[&RgbImage]) -> Vec<f32> {
        if images.is_empty() {
            return Vec::new();
        }
        let mut input = Vec::with_capacity(images.len() * 3 * INPUT_SIDE * INPUT_SIDE);
        for image in images {
            input.extend(input_planes(image));
        }
        let x = Tensor::<4>::from_data(TensorData::new(input, [images.len(), 3, INPUT_SIDE, INPUT_SIDE]), &self.device);
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        let [batch, channels, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([batch * channels]).into_data().try_into_vec::<f32>().expect("f32 features")
    }
}

/// An image as pytorch-fid feeds it: `ToTensor` (u8 / 255), bilinear resize to 299×299, 2x − 1;
/// three planes, row-major.
pub fn input_planes(image: &RgbImage) -> Vec<f32> {
    let (w, h) = (image.width, image.height);
    let mut out = Vec::with_capacity(3 * INPUT_SIDE * INPUT_SIDE);
    for channel in 0..3 {
        let plane: Vec<f32> = (0..w * h).map(|i| f32::from(image.pixels[i * 3 + channel]) / 255.0).collect();
        out.extend(interpolate_bilinear(&plane, w, h, INPUT_SIDE, INPUT_SIDE).into_iter().map(|v| 2.0 * v - 1.0));
    }
    out
}
