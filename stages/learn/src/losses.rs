//! The paper's losses over one batch (see `docs/method.md`).
//!
//! `sim[i, j] = C_ij` is the cosine of row i's audio and row j's caption; logits are `C / τ`.
//! - `q(c_j | a_i)`: softmax over j of row i (over the batch's captions, per audio);
//! - `q(a_i | c_j)`: softmax over i of column j (over the batch's audios, per caption).
//!
//! `L_sup = -1/2 (mean_P log q(a|c) + mean_P log q(c|a))`, P = pairs whose rows come from the
//! same recording. `L_dist = 1/2 (-1/B ΣΣ p(c|a) log q(c|a) - 1/B ΣΣ p(a|c) log q(a|c))` with
//! targets from the estimated correspondences `C_hat` at the same temperature. [`Objective`]
//! combines them into what a training minimises.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};

use crate::params::DistillParams;

/// `audio [b, d] · text [b, d]ᵀ` → `[b, b]` (cosines when both are L2-normalised).
pub fn similarity(audio: Tensor<2>, text: Tensor<2>) -> Tensor<2> {
    audio.matmul(text.transpose())
}

/// `P[i, j] = 1` where rows i and j come from the same recording.
pub fn positives(clips: &[usize], device: &Device) -> Tensor<2> {
    let b = clips.len();
    let values: Vec<f32> = (0..b)
        .flat_map(|i| (0..b).map(move |j| (i, j)))
        .map(|(i, j)| f32::from(clips[i] == clips[j]))
        .collect();
    Tensor::from_data(TensorData::new(values, [b, b]), device)
}

/// `(log q(c|a), log q(a|c))` for logits `sim · scale`.
fn log_q(sim: Tensor<2>, scale: Tensor<1>) -> (Tensor<2>, Tensor<2>) {
    let logits = sim * scale.reshape([1, 1]);
    (log_softmax(logits.clone(), 1), log_softmax(logits, 0))
}

/// `L_sup` (a one-element tensor). `scale` = 1/τ; `positives` from [`positives`].
pub fn sup_loss(sim: Tensor<2>, scale: Tensor<1>, positives: Tensor<2>) -> Tensor<1> {
    let (log_q_c_a, log_q_a_c) = log_q(sim, scale);
    let n = positives.clone().sum();
    let a = (log_q_a_c * positives.clone()).sum().div(n.clone());
    let c = (log_q_c_a * positives).sum().div(n);
    (a + c).mul_scalar(-0.5)
}

/// `L_dist` (a one-element tensor): `c_hat [b, b]` are the estimated correspondences of the
/// batch's (audio i, caption j); targets use the temperature `1/target_scale`.
pub fn dist_loss(
    sim: Tensor<2>,
    scale: Tensor<1>,
    c_hat: Tensor<2>,
    target_scale: f64,
) -> Tensor<1> {
    let b = sim.dims()[0] as f64;
    let (log_q_c_a, log_q_a_c) = log_q(sim, scale);
    let target_logits = c_hat.mul_scalar(target_scale);
    let p_c_a = softmax(target_logits.clone(), 1);
    let p_a_c = softmax(target_logits, 0);
    let c = (p_c_a * log_q_c_a).sum();
    let a = (p_a_c * log_q_a_c).sum();
    (c + a).mul_scalar(-0.5 / b)
}

/// What a training minimises over a batch. `T` is where distillation finds `C_hat`: the
/// teachers' embeddings in a [`crate::train::TrainJob`], their index over the training rows
/// inside the loop.
#[derive(Debug, Clone, Copy)]
pub enum Objective<T> {
    /// Stage 1 (`train`): `L_sup`.
    Contrastive,
    /// Stage 2 (`distill`): `λ_sup L_sup + λ_dist L_dist`.
    Distillation {
        teachers: T,
        lambda_sup: f64,
        lambda_dist: f64,
    },
}

impl<T> Objective<T> {
    /// `distill`'s objective with `C_hat` from `teachers`.
    pub fn distillation(params: &DistillParams, teachers: T) -> Self {
        Objective::Distillation {
            teachers,
            lambda_sup: params.lambda_sup,
            lambda_dist: params.lambda_dist,
        }
    }

    /// The loss of one batch (a one-element tensor): `sim [b, b]` from [`similarity`], `scale`
    /// = 1/τ, `clips` the recording of every row (`L_sup`'s positives). `c_hat` gives the
    /// batch's `C_hat [b, b]` from the teachers; only distillation calls it.
    pub fn loss(
        &self,
        sim: Tensor<2>,
        scale: Tensor<1>,
        clips: &[usize],
        c_hat: impl FnOnce(&T) -> Tensor<2>,
    ) -> Tensor<1> {
        let sup = |sim: Tensor<2>, scale: Tensor<1>| {
            let device = sim.device();
            sup_loss(sim, scale, positives(clips, &device))
        };
        match self {
            Objective::Contrastive => sup(sim, scale),
            Objective::Distillation {
                teachers,
                lambda_sup,
                lambda_dist,
            } => {
                // The targets take the student's τ, but no gradient flows into τ through them.
                let target_scale = scalar(scale.clone().detach());
                let dist = dist_loss(sim.clone(), scale.clone(), c_hat(teachers), target_scale)
                    .mul_scalar(*lambda_dist);
                // λ_sup = 0 (the published recipe) skips `L_sup` and its cost.
                if *lambda_sup > 0.0 {
                    dist + sup(sim, scale).mul_scalar(*lambda_sup)
                } else {
                    dist
                }
            }
        }
    }
}

/// The value of a one-element tensor (NaN if it cannot be read).
pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map(|v| v[0] as f64)
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Device {
        Device::flex()
    }

    fn t2(rows: &[&[f32]]) -> Tensor<2> {
        let n = rows.len();
        let m = rows[0].len();
        let v: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(v, [n, m]), &dev())
    }

    fn scale(inv_tau: f32) -> Tensor<1> {
        Tensor::from_floats([inv_tau], &dev())
    }

    fn value(t: Tensor<1>) -> f64 {
        t.into_data().try_to_vec::<f32>().unwrap()[0] as f64
    }

    #[test]
    fn sup_loss_2x2_identity_by_hand() {
        // C = I, τ = 1: every positive has log q = log(e / (e + 1)) in both directions.
        let l = value(sup_loss(
            t2(&[&[1.0, 0.0], &[0.0, 1.0]]),
            scale(1.0),
            positives(&[0, 1], &dev()),
        ));
        let expected = (1.0 + (-1.0f64).exp()).ln(); // 0.313262
        assert!((l - expected).abs() < 1e-5, "{expected}");
    }

    #[test]
    fn sup_loss_2x2_asymmetric_by_hand() {
        // C = [[0.5, 0.1], [0.3, 0.2]], τ = 0.5 → logits [[1, .2], [.6, .4]].
        // rows:    q(c0|a0) = e^1/(e^1+e^.2), q(c1|a1) = e^.4/(e^.6+e^.4)
        // columns: q(a0|c0) = e^1/(e^1+e^.6), q(a1|c1) = e^.4/(e^.2+e^.4)
        let l = value(sup_loss(
            t2(&[&[0.5, 0.1], &[0.3, 0.2]]),
            scale(2.0),
            positives(&[7, 9], &dev()),
        ));
        let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
        let rows = (1.0 - lse(1.0, 0.2)) + (0.4 - lse(0.6, 0.4));
        let cols = (1.0 - lse(1.0, 0.6)) + (0.4 - lse(0.2, 0.4));
        let expected = -0.5 * (rows / 2.0 + cols / 2.0);
        assert!((l - expected).abs() < 1e-5, "{} vs {expected}", l);
        assert!((expected - 0.57010).abs() < 1e-4, "hand value {expected}");
    }

    #[test]
    fn sup_loss_counts_two_captions_of_one_clip_as_positives() {
        // Rows 0 and 1 hold captions of the same clip: P = {00, 01, 10, 11, 22}.
        // With C = 0 everywhere every log q is log(1/3): L = log 3 regardless of P.
        let zeros = t2(&[&[0.0; 3], &[0.0; 3], &[0.0; 3]]);
        let l = value(sup_loss(zeros, scale(20.0), positives(&[4, 4, 5], &dev())));
        assert!((l - 3f64.ln()).abs() < 1e-5);

        // C = [[1,1,0],[1,1,0],[0,0,1]], τ = 1. Rows 0,1: log q over (1,1,0) → for positives
        // (entries 1): 1 - log(2e + 1); row 2: positive (2,2) = 1 - log(2 + e).
        // Columns are the same by symmetry. mean_P over the 5 positives:
        let c = t2(&[&[1.0, 1.0, 0.0], &[1.0, 1.0, 0.0], &[0.0, 0.0, 1.0]]);
        let l = value(sup_loss(c, scale(1.0), positives(&[4, 4, 5], &dev())));
        let e = std::f64::consts::E;
        let mean = (4.0 * (1.0 - (2.0 * e + 1.0).ln()) + (1.0 - (2.0 + e).ln())) / 5.0;
        assert!((l + mean).abs() < 1e-5, "{} vs {}", l, -mean);
        // Treating only the diagonal as positive would give a different value.
        let diag_only = -(2.0 * (1.0 - (2.0 * e + 1.0).ln()) + (1.0 - (2.0 + e).ln())) / 3.0;
        assert!((l - diag_only).abs() > 1e-3);
    }

    #[test]
    fn dist_loss_2x2_by_hand() {
        // Student C = I, teacher C_hat = [[1, 0.5], [0, 1]], τ = 1.
        let sim = t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let c_hat = t2(&[&[1.0, 0.5], &[0.0, 1.0]]);
        let l = value(dist_loss(sim, scale(1.0), c_hat, 1.0));
        let e = std::f64::consts::E;
        let (hi, lo) = ((e / (e + 1.0)).ln(), (1.0 / (e + 1.0)).ln()); // log q on/off diagonal
        let sm = |a: f64, b: f64| a.exp() / (a.exp() + b.exp());
        // p(c|a): row 0 softmax(1, .5), row 1 softmax(0, 1)
        let rows = sm(1.0, 0.5) * hi + sm(0.5, 1.0) * lo + sm(0.0, 1.0) * lo + sm(1.0, 0.0) * hi;
        // p(a|c): column 0 softmax(1, 0), column 1 softmax(.5, 1)
        let cols = sm(1.0, 0.0) * hi + sm(0.0, 1.0) * lo + sm(0.5, 1.0) * lo + sm(1.0, 0.5) * hi;
        let expected = 0.5 * (-rows / 2.0 - cols / 2.0);
        assert!((l - expected).abs() < 1e-5, "{} vs {expected}", l);
    }

    #[test]
    fn dist_loss_with_one_hot_teacher_equals_diagonal_sup_loss() {
        // A teacher far more confident than τ gives one-hot targets on the diagonal: L_dist is
        // then L_sup with P = diagonal.
        let sim = t2(&[&[0.9, 0.2, -0.1], &[0.3, 0.8, 0.0], &[0.1, 0.4, 0.7]]);
        let c_hat = t2(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[0.0, 0.0, 1.0]]);
        let d = value(dist_loss(sim.clone(), scale(20.0), c_hat, 1000.0));
        let s = value(sup_loss(sim, scale(20.0), positives(&[0, 1, 2], &dev())));
        assert!((d - s).abs() < 1e-4, "{} vs {}", d, s);
    }

    #[test]
    fn contrastive_objective_is_l_sup_by_hand() {
        // C = I, τ = 1, two recordings: as `sup_loss_2x2_identity_by_hand`, log(1 + e^-1).
        let l = value(Objective::<()>::Contrastive.loss(
            t2(&[&[1.0, 0.0], &[0.0, 1.0]]),
            scale(1.0),
            &[0, 1],
            |_| unreachable!("contrastive training reads no C_hat"),
        ));
        assert!((l - 0.313262).abs() < 1e-5, "{l}");
    }

    #[test]
    fn distillation_objective_weighs_both_losses_by_hand() {
        // C = I, C_hat = [[1, 0.5], [0, 1]], τ = 1, λ_sup = 0.5, λ_dist = 2.
        // L_sup = log(1 + e^-1) = 0.313262.
        // L_dist (as `dist_loss_2x2_by_hand`): log q = log(e/(e+1)) = -0.313262 on the
        // diagonal, log(1/(e+1)) = -1.313262 off it; the targets' diagonal entries sum to
        // σ(0.5) + σ(1) = 0.622459 + 0.731059 = 1.353518 over the rows (the same over the
        // columns), the off-diagonal ones to 0.646482, so
        // L_dist = (1.353518 · 0.313262 + 0.646482 · 1.313262) / 2 = 0.636503.
        // λ_dist L_dist + λ_sup L_sup = 2 · 0.636503 + 0.5 · 0.313262 = 1.429636.
        let objective = Objective::Distillation {
            teachers: t2(&[&[1.0, 0.5], &[0.0, 1.0]]),
            lambda_sup: 0.5,
            lambda_dist: 2.0,
        };
        let l = value(objective.loss(
            t2(&[&[1.0, 0.0], &[0.0, 1.0]]),
            scale(1.0),
            &[0, 1],
            Tensor::clone,
        ));
        assert!((l - 1.429636).abs() < 1e-5, "{l}");
    }

    #[test]
    fn distillation_targets_take_the_students_temperature_by_hand() {
        // C = C_hat = I, τ = 0.5 (scale 2), λ_sup = 0, λ_dist = 1: targets and student are both
        // softmax(2, 0) = (0.880797, 0.119203) on every row and column, so L_dist is its entropy
        // -(0.880797 · log 0.880797 + 0.119203 · log 0.119203) = 0.365334. Targets at τ = 1
        // would give 0.664811, and counting L_sup (log(1 + e^-2) = 0.126928) 0.492262.
        let eye = || t2(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let objective = Objective::Distillation {
            teachers: eye(),
            lambda_sup: 0.0,
            lambda_dist: 1.0,
        };
        let l = value(objective.loss(eye(), scale(2.0), &[0, 1], Tensor::clone));
        assert!((l - 0.365334).abs() < 1e-5, "{l}");
    }
}
