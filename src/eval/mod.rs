//! The paper's assessment: the reader study's ROC analysis (`roc`) and its plot (`plot`).

pub mod plot;
pub mod roc;
