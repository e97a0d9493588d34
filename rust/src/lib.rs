//! ntkfast: Neural Tangent Kernels of fully-connected networks on multicore CPUs.
//!
//! The numerical core is plain Rust over slices; the Python bindings live in
//! the `python` module (feature `python`). Conventions follow Jacot, Gabriel &
//! Hongler (2018): NTK parametrisation, depth L (L − 1 nonlinearities), bias
//! scale β.
//!
//! The public surface is what the re-exports below name: the limit kernels
//! ([`LimitKernel`]), networks ([`Network`], [`empirical_ntk`]), activations,
//! inputs ([`Samples`]), the thread pool and errors. Inputs are checked once,
//! where these take them; everything else is internal (see docs/architecture.md).

pub mod activation;
mod bivariate;
mod chebyshev;
mod cholesky;
mod correlation_table;
mod duals;
mod duals_f32;
mod eigen;
mod empirical;
mod error;
mod gram;
mod hermite;
pub mod init;
mod kinked;
mod limit;
mod network;
mod pieces;
pub mod pool;
mod real;
mod samples;
mod simd;
mod tabulated;
mod tiles;
mod training;
mod trig;

#[cfg(feature = "python")]
mod python;

pub use activation::Activation;
pub use cholesky::solve_spd;
pub use eigen::symmetric_eigen;
pub use empirical::{empirical_ntk, Contraction, Features};
pub use error::{Error, Result};
pub use hermite::{Pointwise, MAX_SERIES_VARIANCE};
pub use limit::{Diagonal, LimitKernel, Outputs, Prepared, Report, Sigma, Which};
pub use network::{Forward, Layer, LayerMut, Network, Pass, Sink};
pub use pieces::{Pieces, MAX_BREAKS};
pub use real::Real;
pub use samples::Samples;
pub use tiles::{TILE, TILE_F32};
pub use training::Cost;
