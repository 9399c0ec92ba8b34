//! The CAD classifier: a small ResNet (He et al. 2016; torchvision's `resnet` layout of
//! `BasicBlock`s and names) on one gray channel, with GroupNorm in place of BatchNorm (the
//! statistics do not depend on the batch: exact at batch size 1, the same in training and
//! evaluation, which small CAD batches need; Wu & He 2018), and one logit: "a lesion is here".

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::imaging::{BREAST_LEVEL, RgbImage, resize};
use crate::model::ops;
use crate::pipeline::image_processor::normalize;

/// The architecture: saved as `config.json` beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CadConfig {
    /// The classifier's input: patches of `input_size`×`input_size` pixels of the image.
    pub input_size: usize,
    /// Images are resized to `image_size`×`image_size` gray pixels first (patches equal to the
    /// image classify whole images).
    pub image_size: usize,
    /// Channels of each stage (`layer1`, `layer2`, …).
    pub widths: Vec<usize>,
    /// `BasicBlock`s per stage.
    pub blocks: Vec<usize>,
    /// GroupNorm groups (at most the channels of a layer).
    pub groups: usize,
}

impl CadConfig {
    /// `tiny` (≈ 0.2 M parameters), `small` (≈ 0.7 M) or `resnet18` (torchvision's widths, ≈ 11 M).
    pub fn preset(name: &str, input_size: usize, image_size: usize) -> Result<Self, String> {
        let (widths, blocks) = match name {
            "tiny" => (vec![16, 32, 64, 128], vec![1, 1, 1, 1]),
            "small" => (vec![16, 32, 64, 128], vec![2, 2, 2, 2]),
            "resnet18" => (vec![64, 128, 256, 512], vec![2, 2, 2, 2]),
            other => return Err(format!("no CAD preset {other:?} (tiny, small, resnet18)")),
        };
        Ok(Self { input_size, image_size, widths, blocks, groups: 8 })
    }

    pub fn check(&self) -> Result<(), String> {
        if self.widths.is_empty() || self.widths.len() != self.blocks.len() || self.blocks.contains(&0) {
            return Err(format!("CAD config: {} widths and {} block counts (equal, nonzero)", self.widths.len(), self.blocks.len()));
        }
        if let Some(w) = self.widths.iter().find(|&&w| w % self.groups.min(w) != 0 || self.groups == 0) {
            return Err(format!("CAD config: {w} channels do not split into {} groups", self.groups));
        }
        // The stem divides the side by 4, each stage after the first by 2: at least 1 pixel left.
        let reduction = 4 << (self.widths.len() - 1);
        if self.input_size < reduction || self.input_size > self.image_size || self.image_size > 4096 {
            return Err(format!(
                "CAD config: patches of {} pixels in images of {} (patches from {reduction} pixels to the image; images up to 4096)",
                self.input_size, self.image_size
            ));
        }
        Ok(())
    }

    /// A model from its `config.json` and `model.safetensors` bytes (what [`CadConfig::init`]
    /// builds, with the weights `cad train` wrote), on `device`.
    pub fn load(config_json: &[u8], weights: Vec<u8>, device: &Device) -> Result<(Cad, CadConfig), String> {
        let config: CadConfig = serde_json::from_slice(config_json).map_err(|e| format!("config.json is not a CAD config: {e}"))?;
        config.check().map_err(|e| format!("config.json: {e}"))?;
        let model = crate::weights::load_safetensors(config.init(device), weights, "cad").map_err(|e| format!("model.safetensors: {e}"))?;
        Ok((model, config))
    }

    pub fn init(&self, device: &Device) -> Cad {
        let norm = |channels: usize| GroupNormConfig::new(self.groups.min(channels), channels).init(device);
        let conv = |cin: usize, cout: usize, kernel: usize, stride: usize| {
            let pad = kernel / 2;
            Conv2dConfig::new([cin, cout], [kernel, kernel])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device)
        };
        let mut layers = Vec::new();
        let mut cin = self.widths[0];
        for (stage, (&width, &count)) in self.widths.iter().zip(&self.blocks).enumerate() {
            let mut blocks = Vec::new();
            for k in 0..count {
                let stride = if stage > 0 && k == 0 { 2 } else { 1 };
                let downsample = (stride != 1 || cin != width).then(|| Downsample { conv: conv(cin, width, 1, stride), norm: norm(width) });
                blocks.push(BasicBlock {
                    conv1: conv(cin, width, 3, stride),
                    norm1: norm(width),
                    conv2: conv(width, width, 3, 1),
                    norm2: norm(width),
                    downsample,
                });
                cin = width;
            }
            layers.push(blocks);
        }
        Cad { conv1: conv(1, self.widths[0], 7, 2), norm1: norm(self.widths[0]), layers, fc: LinearConfig::new(cin, 1).init(device) }
    }
}

#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub norm: GroupNorm,
}

#[derive(Module, Debug)]
pub struct BasicBlock {
    pub conv1: Conv2d,
    pub norm1: GroupNorm,
    pub conv2: Conv2d,
    pub norm2: GroupNorm,
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = relu(ops::group_norm(&self.norm1, self.conv1.forward(x.clone())));
        let h = ops::group_norm(&self.norm2, self.conv2.forward(h));
        let shortcut = match &self.downsample {
            Some(d) => ops::group_norm(&d.norm, d.conv.forward(x)),
            None => x,
        };
        relu(h + shortcut)
    }
}

/// The classifier. Weight names follow torchvision (`conv1`, `layer1.0.conv1`, `fc`; norms
/// `norm1`, `downsample.conv`/`downsample.norm`).
#[derive(Module, Debug)]
pub struct Cad {
    pub conv1: Conv2d,
    pub norm1: GroupNorm,
    pub layers: Vec<Vec<BasicBlock>>,
    pub fc: Linear,
}

impl Cad {
    /// The last stage's output (Grad-CAM's target layer): `[batch, widths.last, h, w]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(ops::group_norm(&self.norm1, self.conv1.forward(x)));
        let x = max_pool2d(x, MaxPoolOptions::new([3, 3]).with_stride([2, 2]).with_padding([1, 1]));
        self.layers.iter().flatten().fold(x, |x, block| block.forward(x))
    }

    /// The logit from the last stage's output: global average pooling and the linear layer.
    pub fn head(&self, features: Tensor<4>) -> Tensor<1> {
        let [batch, channels, _, _] = features.dims();
        let pooled = features.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        self.fc.forward(pooled).reshape([batch])
    }

    /// Logits for `x`: `[batch, 1, side, side]` in [−1, 1] → `[batch]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<1> {
        self.head(self.features(x))
    }
}

/// An image as model input (gray, resized, [−1, 1]).
pub fn to_input(image: &RgbImage, side: usize) -> Vec<f32> {
    let gray: Vec<f32> = image.to_gray().iter().map(|&g| f32::from(g)).collect();
    resize(&gray, image.width, image.height, side, side).iter().map(|v| normalize(v.clamp(0.0, 255.0))).collect()
}

/// A lesion mask as model input (`to_input` of the mask image) to flags: inside where the resized
/// gray is at least 127.5, which the input maps to ≥ 0.
pub fn lesion_mask(input: &[f32]) -> Vec<bool> {
    input.iter().map(|&v| v >= 0.0).collect()
}

/// The breast pixels of a model input ([`is_breast`]).
pub fn breast_mask(input: &[f32]) -> Vec<bool> {
    input.iter().map(|&v| is_breast(v)).collect()
}

/// Whether an input value ([−1, 1]) is breast rather than background.
pub fn is_breast(value: f32) -> bool {
    (value + 1.0) * 127.5 > f32::from(BREAST_LEVEL)
}
