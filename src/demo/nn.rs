//! Small training building blocks shared by the demo models: equalized-learning-rate layers,
//! an Adam optimizer whose state can be checkpointed, and an EMA of weights.
//!
//! tch's own optimizer keeps its moments inside libtorch where they cannot be saved, and a
//! resumed GAN run with fresh Adam moments stumbles; so Adam here is a few tensor ops over
//! named parameters, and its moments go into the checkpoint with the weights.

use std::collections::BTreeMap;

use tch::{nn, Kind, Tensor};

/// A conv (or, with `kernel == 0`, a dense layer) whose weights are stored N(0, 1) and
/// scaled by `√(2 / fan_in)` at run time, as Progressive GAN trains both its networks.
pub struct EqLayer {
    weight: Tensor,
    bias: Tensor,
    scale: f64,
    padding: i64,
    dense: bool,
}

impl EqLayer {
    pub fn conv(path: nn::Path, cin: i64, cout: i64, kernel: i64) -> Self {
        let weight = path.var(
            "weight",
            &[cout, cin, kernel, kernel],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let bias = path.var("bias", &[cout], nn::Init::Const(0.0));
        let scale = (2.0 / (cin * kernel * kernel) as f64).sqrt();
        EqLayer {
            weight,
            bias,
            scale,
            padding: kernel / 2,
            dense: false,
        }
    }

    pub fn dense(path: nn::Path, cin: i64, cout: i64, gain: f64) -> Self {
        let weight = path.var(
            "weight",
            &[cout, cin],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
        );
        let bias = path.var("bias", &[cout], nn::Init::Const(0.0));
        EqLayer {
            weight,
            bias,
            scale: gain / (cin as f64).sqrt(),
            padding: 0,
            dense: true,
        }
    }

    /// Runs in the input's dtype (bf16 training casts the fp32 master weights here).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let weight = (&self.weight * self.scale).to_kind(x.kind());
        let weight = if self.dense || x.kind() == Kind::Float {
            weight
        } else {
            crate::model::proggan::channels_last(&weight).expect("4-d conv weight")
        };
        let bias = self.bias.to_kind(x.kind());
        if self.dense {
            x.matmul(&weight.tr()) + bias
        } else {
            x.conv2d(
                &weight,
                Some(&bias),
                [1, 1],
                [self.padding, self.padding],
                [1, 1],
                1,
            )
        }
    }
}

/// Adam with checkpointable moments, over every variable of a store.
pub struct Adam {
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: i64,
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    pub fn new(vs: &nn::VarStore, lr: f64, beta1: f64, beta2: f64) -> Self {
        let params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let zeros = || {
            params
                .iter()
                .map(|(_, p)| p.zeros_like())
                .collect::<Vec<_>>()
        };
        Adam {
            m: zeros(),
            v: zeros(),
            params,
            step: 0,
            lr,
            beta1,
            beta2,
            eps: 1e-8,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// One update from the gradients currently stored on the parameters.
    pub fn update(&mut self) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let correction1 = 1.0 - self.beta1.powi(self.step as i32);
        let correction2 = 1.0 - self.beta2.powi(self.step as i32);
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let grad = p.grad();
            if !grad.defined() {
                continue;
            }
            let _ = self.m[i]
                .g_mul_scalar_(self.beta1)
                .g_add_(&(&grad * (1.0 - self.beta1)));
            let _ = self.v[i]
                .g_mul_scalar_(self.beta2)
                .g_add_(&(grad.square() * (1.0 - self.beta2)));
            let denom = (&self.v[i] / correction2).sqrt() + self.eps;
            let _ = p.g_sub_(&((&self.m[i] / correction1) / denom * self.lr));
        }
    }

    /// Moments as named tensors (`<prefix>.m.<name>`, `<prefix>.v.<name>`) and the
    /// optimizer's own step count (`<prefix>.step`) for a checkpoint. The step count is
    /// not always the run's: the optimizer starts afresh when a run grows or resumes
    /// without moments, and its bias correction must know.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = vec![(format!("{prefix}.step"), Tensor::from(self.step))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{prefix}.m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("{prefix}.v.{name}"), self.v[i].shallow_clone()));
        }
        out
    }

    /// Loads what [`Self::state`] wrote. A checkpoint from before the step count was
    /// stored takes `step` (the run's).
    pub fn load_state(
        &mut self,
        prefix: &str,
        tensors: &BTreeMap<String, Tensor>,
        step: i64,
    ) -> anyhow::Result<()> {
        let _guard = tch::no_grad_guard();
        for (i, (name, _)) in self.params.iter().enumerate() {
            for (kind, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("{prefix}.{kind}.{name}");
                let saved = tensors
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("checkpoint lacks `{key}`"))?;
                slot.f_copy_(saved)?;
            }
        }
        self.step = tensors
            .get(&format!("{prefix}.step"))
            .map_or(step, |t| t.int64_value(&[]));
        Ok(())
    }
}

/// `ema ← β·ema + (1 − β)·live`, variable by variable (same names in both stores).
pub fn ema_update(ema: &nn::VarStore, live: &nn::VarStore, beta: f64) {
    let _guard = tch::no_grad_guard();
    let live_vars = live.variables();
    for (name, mut target) in ema.variables() {
        let source = &live_vars[&name];
        let _ = target.g_mul_scalar_(beta).g_add_(&(source * (1.0 - beta)));
    }
}

/// Copies every variable of `from` into the same-named variable of `to`.
pub fn copy_vars(to: &nn::VarStore, from: &nn::VarStore) {
    let _guard = tch::no_grad_guard();
    let from_vars = from.variables();
    for (name, mut target) in to.variables() {
        target.copy_(&from_vars[&name]);
    }
}

/// Loads named tensors into a store's variables, requiring every variable.
pub fn load_vars(
    to: &nn::VarStore,
    prefix: &str,
    tensors: &BTreeMap<String, Tensor>,
) -> anyhow::Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, mut target) in to.variables() {
        let key = format!("{prefix}{name}");
        let saved = tensors
            .get(&key)
            .ok_or_else(|| anyhow::anyhow!("checkpoint lacks `{key}`"))?;
        target.f_copy_(&saved.to_kind(Kind::Float))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn adam_minimizes_a_quadratic_and_its_state_round_trips() {
        let vs = nn::VarStore::new(Device::Cpu);
        let x = vs.root().var("x", &[3], nn::Init::Const(5.0));
        let mut adam = Adam::new(&vs, 0.1, 0.9, 0.999);
        for _ in 0..300 {
            adam.zero_grad();
            (&x - 1.0).square().sum(Kind::Float).backward();
            adam.update();
        }
        let value = x.double_value(&[0]);
        assert!((value - 1.0).abs() < 0.05, "x = {value}");
        let state: BTreeMap<String, Tensor> = adam.state("opt").into_iter().collect();
        let mut other = Adam::new(&vs, 0.1, 0.9, 0.999);
        other.load_state("opt", &state, adam.step).unwrap();
        assert!(other.m[0].equal(&adam.m[0]) && other.step == 300);
    }

    #[test]
    fn ema_moves_toward_live_weights() {
        let live = nn::VarStore::new(Device::Cpu);
        let _a = live.root().var("a", &[2], nn::Init::Const(1.0));
        let ema = nn::VarStore::new(Device::Cpu);
        let b = ema.root().var("a", &[2], nn::Init::Const(0.0));
        ema_update(&ema, &live, 0.75);
        assert!((b.double_value(&[1]) - 0.25).abs() < 1e-7);
    }
}
