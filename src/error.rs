//! The library's error type: every failure a user or a file can cause, each with what to do.

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable GPU adapter (WebGPU missing in the browser, no Vulkan/Metal/DX12 natively).
    #[error("no GPU device: {0}")]
    NoGpu(String),
    /// A config file that is malformed or asks for something we do not implement.
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },
    /// A file that cannot be read.
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    /// A model folder that is not laid out as expected.
    #[error("{path} is not a usable model folder: {reason}")]
    Layout { path: String, reason: String },
    /// A weight file that does not fit the model (missing, unexpected or mis-shaped tensors).
    #[error("{component} weights: {reason}")]
    Weights { component: String, reason: String },
    /// A downloaded or stored file whose bytes are not the ones its manifest lists.
    #[error("{file} is corrupt: {reason}; delete it and download it again")]
    Corrupt { file: String, reason: String },
    /// A model package this version cannot use (unknown format version, wrong kind, ...).
    #[error("model package: {0}")]
    Package(String),
    /// A caller-supplied value outside its valid range.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },
    /// The web app's pipeline worker could not start, or stopped (the message says which).
    #[error("{0}")]
    Worker(String),
    /// Reading a tensor back from the device failed (device lost, out of memory, ...).
    #[error("reading a tensor from the device failed: {0}")]
    TensorRead(String),
}

/// `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
