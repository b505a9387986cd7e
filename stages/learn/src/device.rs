//! Choosing where a run computes: Burn's flex backend on the CPU, or CUDA when the crate is
//! built with the `cuda` feature and a GPU is present.

use anyhow::bail;
use burn::prelude::*;

use crate::params::DeviceChoice;

/// The resolved compute device (without autodiff).
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    /// `"cpu"` or `"cuda"`, as written to `metrics.json`.
    pub name: &'static str,
}

impl Compute {
    pub fn is_gpu(&self) -> bool {
        self.name == "cuda"
    }
}

/// Whether a CUDA device is usable by this binary.
pub fn cuda_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        !burn::tensor::Device::enumerate(burn::tensor::DeviceType::Cuda).is_empty()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// Resolves `auto` / `cpu` / `cuda`; `gpu` is the CUDA ordinal the executor gave the run (one
/// GPU per run on a machine with several).
pub fn resolve(choice: DeviceChoice, gpu: Option<usize>) -> anyhow::Result<Compute> {
    let cpu = Compute {
        device: Device::flex(),
        name: "cpu",
    };
    match choice {
        DeviceChoice::Cpu => Ok(cpu),
        DeviceChoice::Auto => Ok(if cuda_available() { cuda(gpu) } else { cpu }),
        DeviceChoice::Cuda => {
            if !cfg!(feature = "cuda") {
                bail!(
                    "`device = \"cuda\"` was requested, but this binary was built without CUDA support\n\
                     hint: rebuild with `cargo build --release --features cuda`, or set `device = \"auto\"`"
                );
            }
            if !cuda_available() {
                bail!(
                    "`device = \"cuda\"` was requested, but no CUDA device was found\nhint: set `device = \"auto\"` to fall back to the CPU"
                );
            }
            Ok(cuda(gpu))
        }
    }
}

/// Whether `choice` will hold the GPU (for the scheduler's resources; never fails).
pub fn wants_gpu(choice: DeviceChoice) -> bool {
    match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => cuda_available(),
    }
}

#[cfg(feature = "cuda")]
fn cuda(gpu: Option<usize>) -> Compute {
    Compute {
        device: Device::cuda(gpu.unwrap_or(0)),
        name: "cuda",
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda(_gpu: Option<usize>) -> Compute {
    unreachable!("CUDA is never selected without the `cuda` feature")
}

/// Runs `f` on a rayon pool of `threads` threads (the flex backend parallelises with rayon).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    Ok(pool.install(f))
}
