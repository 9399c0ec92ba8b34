//! Compute precision: f32 everywhere, or the UNet and the text encoder in f16 on GPUs that have
//! it (WebGPU's `shader-f16`), as diffusers runs SD1.5 with `torch_dtype=torch.float16`.
//!
//! In f16 the weights of the UNet and the text encoder are f16 and so are their activations,
//! except where f16 is known to break: group and layer norms take their statistics in f32
//! (burn's norms widen f16 input themselves; so does [`super::ops::group_norm`]'s chunked path),
//! attention computes its scores and softmax in f32
//! ([`super::ops::scaled_dot_product_attention`]), and the VAE stays f32 whole (its decoder's
//! activations at 512×512 are the largest and the image is made from them). The UNet and the
//! text encoder return f32, so the schedulers, guidance and latents are f32 as before.
//!
//! A component tells its precision by the dtype of its weights ([`compute_dtype`]). Weights a
//! large quantized package keeps 8-bit on the GPU (see `weights::on_device`) stay f32 compute:
//! burn's quantized kernels dequantize to f32.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor};

/// The precision the UNet and the text encoder compute in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Precision {
    F32,
    F16,
}

impl Precision {
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::F16 => FloatDType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// Whether `device` computes in f16: a GPU whose adapter has f16 shaders (the CPU backend
    /// computes f16 slower than f32, so it is never chosen there).
    pub fn available(self, device: &Device) -> bool {
        match self {
            Precision::F32 => true,
            Precision::F16 => crate::device::is_gpu(device) && device.supports_dtype(FloatDType::F16),
        }
    }

    /// An error unless [`Self::available`] on `device`.
    pub fn check(self, device: &Device) -> crate::Result<()> {
        if self.available(device) {
            return Ok(());
        }
        Err(crate::Error::InvalidInput { what: "precision", reason: format!("{} needs a GPU with f16 shaders, and this device has none", self.name()) })
    }

    /// f16 where [`Self::available`], else f32: the browser's choice.
    pub fn best(device: &Device) -> Precision {
        if Precision::F16.available(device) { Precision::F16 } else { Precision::F32 }
    }
}

/// The precision a component computes in, told by one of its weights: f16 weights compute in
/// f16; f32 and 8-bit (quantized) ones in f32.
pub fn compute_dtype<const D: usize>(weight: &Tensor<D>) -> FloatDType {
    match weight.dtype() {
        DType::F16 => FloatDType::F16,
        _ => FloatDType::F32,
    }
}

/// Casts every plain float weight of `module` to `dtype`; quantized ones stay as they are.
pub fn cast_weights<M: Module>(module: M, dtype: FloatDType) -> M {
    module.map(&mut Cast(dtype))
}

struct Cast(FloatDType);

impl ModuleMapper for Cast {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id = param.id;
        let tensor = param.val();
        if matches!(tensor.dtype(), DType::QFloat(_)) {
            return Param::initialized(id, tensor);
        }
        Param::initialized(id, tensor.cast(self.0))
    }
}
