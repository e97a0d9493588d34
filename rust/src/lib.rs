//! ntkfast: Neural Tangent Kernels of fully-connected networks on multicore CPUs.
//!
//! The numerical core is plain Rust over slices; the Python bindings live in
//! the `python` module (feature `python`). Conventions follow Jacot, Gabriel &
//! Hongler (2018): NTK parametrisation, depth L (L − 1 nonlinearities), bias
//! scale β.

pub mod activation;
pub mod duals;
mod duals_f32;
pub mod empirical;
pub mod error;
pub mod gram;
pub mod hermite;
pub mod init;
pub mod limit;
mod limit_f32;
pub mod network;
mod simd;
pub mod tiles;
pub mod trig;

#[cfg(feature = "python")]
mod python;

pub use activation::Activation;
pub use empirical::{empirical_ntk, Contraction, Features};
pub use error::{Error, Result};
pub use limit::{LimitKernel, Outputs, Samples};
pub use network::{Layer, LayerMut, Network, Pass, Sink};
