//! Dense matrix products through the `gemm` crate (the kernels of Burn's CPU backend: blocked,
//! SIMD, with run-time CPU feature detection). The similarity matrices of `evaluate` and
//! `correspondences` are such products; a dot product per pair leaves most of the CPU idle.

use gemm::Parallelism;

/// `out = a · bᵀ` for row-major `a` `[m, k]` and `b` `[n, k]` into row-major `out` `[m, n]`,
/// on the current rayon pool's threads. The result does not depend on the number of threads:
/// threads split the output into tiles, and every element's sum over `k` runs in one order.
pub fn a_bt(a: &[f32], b: &[f32], k: usize, out: &mut [f32]) {
    assert!(k > 0, "a_bt: inner dimension 0");
    let (m, n) = (a.len() / k, b.len() / k);
    assert!(
        a.len() == m * k && b.len() == n * k && out.len() == m * n,
        "a_bt: shapes a {} b {} out {} do not fit k {k}",
        a.len(),
        b.len(),
        out.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let (k_, n_) = (k as isize, n as isize);
    // SAFETY: the assert above makes every element the strides reach lie inside the slices:
    // `out[i, j]` at `i * n + j` (column stride 1, row stride n), `a[i, kk]` at `i * k + kk`,
    // and `bᵀ[kk, j] = b[j, kk]` at `j * k + kk` (column stride k, row stride 1). `out` is
    // written only (`read_dst = false`), `a` and `b` only read, and they do not overlap `out`
    // (it is borrowed mutably).
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n_,
            false,
            a.as_ptr(),
            1,
            k_,
            b.as_ptr(),
            k_,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn matches_naive_products_on_odd_shapes() {
        for (m, n, k) in [(1, 1, 1), (3, 4, 13), (37, 129, 256), (54, 1001, 7)] {
            let (a, b) = (random(m * k, 1), random(n * k, 2));
            let mut out = vec![f32::NAN; m * n];
            a_bt(&a, &b, k, &mut out);
            for i in 0..m {
                for j in 0..n {
                    let naive: f64 = (0..k)
                        .map(|d| a[i * k + d] as f64 * b[j * k + d] as f64)
                        .sum();
                    let got = out[i * n + j] as f64;
                    assert!(
                        (got - naive).abs() < 1e-5 * (k as f64).sqrt(),
                        "{m}x{n}x{k} at ({i}, {j}): {got} vs {naive}"
                    );
                }
            }
        }
    }

    #[test]
    fn same_bits_on_one_and_several_threads() {
        let (m, n, k) = (70, 2000, 256);
        let (a, b) = (random(m * k, 3), random(n * k, 4));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = vec![0.0f32; m * n];
            pool.install(|| a_bt(&a, &b, k, &mut out));
            out
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            assert!(
                one.iter()
                    .zip(run(threads))
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{threads} threads give other bits than 1"
            );
        }
    }

    #[test]
    fn empty_shapes_are_fine() {
        let mut out = vec![];
        a_bt(&[], &[1.0, 2.0], 2, &mut out);
        a_bt(&[1.0, 2.0], &[], 2, &mut out);
    }
}
