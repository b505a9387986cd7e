//! Choosing where a run computes: Burn's flex backend on the CPU, or CUDA when the crate is
//! built with the `cuda` feature and a GPU is present.
//!
//! The choice itself ([`choose`]) is a pure function of the request, the GPU slot the executor
//! gave the run and what this binary and machine offer, so every branch a GPU machine takes is
//! tested on the CPU; only [`Offer::here`] and the final `Device::cuda` touch CUDA.

use anyhow::bail;
pub use burn::prelude::Device;

use crate::params::DeviceChoice;

/// The resolved compute device (without autodiff).
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    /// `"cpu"` or `"cuda"`, as written to `metrics.json`.
    pub name: &'static str,
}

/// Where a run computes, before a Burn device is made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Cpu,
    /// A CUDA device ordinal.
    Cuda(usize),
}

/// What this binary and machine offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Whether the binary was built with the `cuda` feature.
    pub compiled: bool,
    /// CUDA devices visible to the process (0 without a driver).
    pub devices: usize,
}

impl Offer {
    /// This binary on this machine (asks the CUDA driver once per call when compiled in).
    pub fn here() -> Self {
        Offer {
            compiled: cfg!(feature = "cuda"),
            devices: cuda_device_count(),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_device_count() -> usize {
    // Without a driver this is empty rather than a panic (cubecl asks for `libcuda` first).
    burn::tensor::Device::enumerate(burn::tensor::DeviceType::Cuda).len()
}

#[cfg(not(feature = "cuda"))]
fn cuda_device_count() -> usize {
    0
}

/// Resolves `auto` / `cpu` / `cuda` against what is offered. `gpu` is the slot the executor
/// gave the run (one GPU per run on a machine with several; `None` outside `--gpus`).
pub fn choose(choice: DeviceChoice, gpu: Option<usize>, offer: Offer) -> anyhow::Result<Target> {
    let cuda = || -> anyhow::Result<Target> {
        let ordinal = gpu.unwrap_or(0);
        if ordinal >= offer.devices {
            bail!(
                "this run was given GPU {ordinal}, but only {} CUDA device(s) are visible\n\
                 hint: run with `--gpus {}` or fewer, or check CUDA_VISIBLE_DEVICES",
                offer.devices,
                offer.devices.max(1)
            );
        }
        Ok(Target::Cuda(ordinal))
    };
    match choice {
        DeviceChoice::Cpu => Ok(Target::Cpu),
        DeviceChoice::Auto if offer.devices > 0 => cuda(),
        DeviceChoice::Auto => Ok(Target::Cpu),
        DeviceChoice::Cuda if !offer.compiled => bail!(
            "`device = \"cuda\"` was requested, but this binary was built without CUDA support\n\
             hint: rebuild with `cargo build --release --features cuda` (README: \"CUDA build\"), \
             or set `device = \"auto\"`"
        ),
        DeviceChoice::Cuda if offer.devices == 0 => bail!(
            "`device = \"cuda\"` was requested, but no CUDA device was found\n\
             hint: set `device = \"auto\"` to fall back to the CPU"
        ),
        DeviceChoice::Cuda => cuda(),
    }
}

/// Resolves the choice on this machine into a Burn device.
pub fn resolve(choice: DeviceChoice, gpu: Option<usize>) -> anyhow::Result<Compute> {
    Ok(match choose(choice, gpu, Offer::here())? {
        Target::Cpu => Compute {
            device: Device::flex(),
            name: "cpu",
        },
        Target::Cuda(ordinal) => cuda(ordinal),
    })
}

/// Whether `choice` will hold a GPU (for the scheduler's resources; never fails).
pub fn wants_gpu(choice: DeviceChoice) -> bool {
    wants_gpu_given(choice, Offer::here())
}

fn wants_gpu_given(choice: DeviceChoice, offer: Offer) -> bool {
    match choice {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda => true,
        DeviceChoice::Auto => offer.devices > 0,
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Compute {
    Compute {
        device: Device::cuda(ordinal),
        name: "cuda",
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> Compute {
    unreachable!("`choose` never offers CUDA to a binary built without it")
}

/// Runs `f` on a rayon pool of `threads` threads (the flex backend parallelises with rayon).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?;
    Ok(pool.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_BUILD: Offer = Offer {
        compiled: false,
        devices: 0,
    };
    const CUDA_BUILD_NO_GPU: Offer = Offer {
        compiled: true,
        devices: 0,
    };
    const TWO_GPUS: Offer = Offer {
        compiled: true,
        devices: 2,
    };

    fn message(result: anyhow::Result<Target>) -> String {
        format!("{:#}", result.expect_err("an error"))
    }

    #[test]
    fn auto_takes_the_gpu_slot_it_was_given_and_falls_back_to_the_cpu() {
        assert_eq!(
            choose(DeviceChoice::Auto, None, TWO_GPUS).unwrap(),
            Target::Cuda(0)
        );
        assert_eq!(
            choose(DeviceChoice::Auto, Some(1), TWO_GPUS).unwrap(),
            Target::Cuda(1)
        );
        for offer in [CPU_BUILD, CUDA_BUILD_NO_GPU] {
            assert_eq!(
                choose(DeviceChoice::Auto, None, offer).unwrap(),
                Target::Cpu
            );
            assert_eq!(
                choose(DeviceChoice::Auto, Some(0), offer).unwrap(),
                Target::Cpu
            );
        }
    }

    #[test]
    fn cpu_is_always_the_cpu() {
        for offer in [CPU_BUILD, CUDA_BUILD_NO_GPU, TWO_GPUS] {
            assert_eq!(
                choose(DeviceChoice::Cpu, Some(1), offer).unwrap(),
                Target::Cpu
            );
        }
    }

    #[test]
    fn cuda_says_what_is_missing() {
        assert!(
            message(choose(DeviceChoice::Cuda, None, CPU_BUILD)).contains("built without CUDA")
        );
        assert!(
            message(choose(DeviceChoice::Cuda, None, CUDA_BUILD_NO_GPU))
                .contains("no CUDA device was found")
        );
        assert_eq!(
            choose(DeviceChoice::Cuda, Some(1), TWO_GPUS).unwrap(),
            Target::Cuda(1)
        );
    }

    #[test]
    fn a_slot_beyond_the_visible_devices_is_an_error_not_a_panic() {
        for choice in [DeviceChoice::Cuda, DeviceChoice::Auto] {
            let text = message(choose(choice, Some(2), TWO_GPUS));
            assert!(
                text.contains("given GPU 2") && text.contains("--gpus 2"),
                "{text}"
            );
        }
    }

    #[test]
    fn only_runs_that_will_use_a_gpu_ask_the_scheduler_for_one() {
        assert!(!wants_gpu_given(DeviceChoice::Cpu, TWO_GPUS));
        assert!(wants_gpu_given(DeviceChoice::Auto, TWO_GPUS));
        assert!(!wants_gpu_given(DeviceChoice::Auto, CUDA_BUILD_NO_GPU));
        // Asked for explicitly, it holds a GPU even where `choose` will then explain the failure.
        assert!(wants_gpu_given(DeviceChoice::Cuda, CPU_BUILD));
    }

    #[test]
    fn this_machine_resolves_auto_to_what_it_offers() {
        let here = Offer::here();
        assert_eq!(here.compiled, cfg!(feature = "cuda"));
        let compute = resolve(DeviceChoice::Auto, None).unwrap();
        assert_eq!(compute.name, if here.devices > 0 { "cuda" } else { "cpu" });
    }

    /// Burn flex's element-wise operations and reductions (macerator) pick the widest SIMD of
    /// the machine at run time; with AVX-512 they sum in 16 lanes, not 8, and the same training
    /// writes other bytes than on an AVX2 host. The workspace patches macerator to stop at AVX2
    /// (`patches/macerator/PATCH.md`); this fails on an AVX-512 host if that patch goes.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn cpu_kernels_stop_at_avx2_so_avx512_hosts_train_the_bytes_of_avx2_hosts() {
        let arch = format!("{:?}", macerator::Arch::detect());
        assert!(matches!(arch.as_str(), "Scalar" | "V2" | "V3"), "{arch}");
    }
}
