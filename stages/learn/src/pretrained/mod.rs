//! Pretrained weights from files published by others: a minimal ONNX reader ([`onnx`]) that
//! the model loaders (e.g. [`crate::models::yamnet::load_yamnet`]) map onto Burn modules.

pub mod bert;
pub mod onnx;
