//! Which `S` of the `T` training timesteps a sampler visits, largest first
//! (diffusers' `timestep_spacing`; Lin et al. 2024, Table 2).
//!
//! ```text
//! leading    t_i = i ⌊T/S⌋ + offset                   T=1000, S=10: 900, 800, …, 0
//! trailing   t_i = round(T − i T/S) − 1, i = 0..S     999, 899, …, 99
//! linspace   t_i = round(i (T − 1)/(S − 1))            999, 888, …, 111, 0
//! quadratic  t_i = ⌊(i √(0.8 T)/(S − 1))²⌋            the DDIM paper's CIFAR spacing
//! ```
//!
//! The step after `t_i` goes to `t_{i+1}`, the next entry of the list — not
//! to `t_i − T/S`, which is wrong for trailing and linspace spacing
//! (diffusers issues 9261 and 12633) — and the last step to the clean data.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How inference timesteps are spread over the training ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestepSpacing {
    /// Multiples of `⌊T/S⌋` from 0 (never reaches `T − 1`).
    Leading,
    /// Multiples of `T/S` counted down from `T − 1` (starts at pure noise).
    Trailing,
    /// `S` rounded points evenly from 0 to `T − 1`.
    Linspace,
    /// Points at squares, dense near the data (DDIM's quadratic schedule).
    Quadratic,
}

deepgen_core::named_choices!(TimestepSpacing, "timestep spacing" {
    Leading => "leading",
    Trailing => "trailing",
    Linspace => "linspace",
    Quadratic => "quadratic",
});

impl TimestepSpacing {
    /// `S` timesteps of `T`, strictly decreasing; `offset` shifts the leading
    /// spacing (diffusers' `steps_offset`, 1 in Stable Diffusion).
    ///
    /// A quadratic spacing whose squares round to the same integer (S close
    /// to `√(0.8 T)`) moves each repeat one step up, so that every one of the
    /// `S` steps moves.
    ///
    /// # Errors
    /// `S = 0`, `S > T`, or an offset that pushes a timestep past `T − 1`.
    pub fn timesteps(self, train_steps: usize, steps: usize, offset: usize) -> Result<Vec<usize>> {
        let n = train_steps;
        if steps == 0 || steps > n {
            return Err(Error::invalid(
                "steps",
                steps,
                format!("a sampler takes between 1 and T = {n} steps"),
            ));
        }
        if offset > 0 && self != TimestepSpacing::Leading {
            return Err(Error::invalid(
                "steps_offset",
                offset,
                "only the leading spacing is offset",
            ));
        }
        let (s, t) = (steps as f64, n as f64);
        let ascending: Vec<usize> = match self {
            TimestepSpacing::Leading => (0..steps).map(|i| i * (n / steps) + offset).collect(),
            TimestepSpacing::Trailing => (1..=steps)
                .map(|i| ((i as f64 * t / s).round() as usize).saturating_sub(1))
                .collect(),
            TimestepSpacing::Linspace if steps == 1 => vec![n - 1],
            TimestepSpacing::Linspace => (0..steps)
                .map(|i| (i as f64 * (t - 1.0) / (s - 1.0)).round() as usize)
                .collect(),
            TimestepSpacing::Quadratic => {
                let top = (0.8 * t).sqrt();
                let mut out: Vec<usize> = Vec::with_capacity(steps);
                for i in 0..steps {
                    // numpy's linspace: i · step, and the last point exactly `top`.
                    let u = match i {
                        0 => 0.0,
                        _ if i + 1 == steps => top,
                        _ => i as f64 * (top / (s - 1.0)),
                    };
                    let v = (u * u) as usize;
                    out.push(match out.last() {
                        Some(&last) if v <= last => last + 1,
                        _ => v,
                    });
                }
                out
            }
        };
        if let Some(&last) = ascending.last()
            && last >= n
        {
            return Err(Error::invalid(
                "steps_offset",
                offset,
                format!("the largest timestep {last} is past T − 1 = {}", n - 1),
            ));
        }
        Ok(ascending.into_iter().rev().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimestepSpacing::*;

    /// Lin et al. 2024, Table 2 (T = 1000, S = 10), in diffusers' 0-based
    /// indices (the table counts from 1).
    #[test]
    fn the_table_of_common_schedules() {
        let ten = |s: TimestepSpacing| s.timesteps(1000, 10, 0).unwrap();
        assert_eq!(ten(Linspace), [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
        assert_eq!(ten(Leading), [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
        assert_eq!(ten(Trailing), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
        // Stable Diffusion's steps_offset = 1.
        assert_eq!(Leading.timesteps(1000, 10, 1).unwrap()[0], 901);
        // DDIM's quadratic spacing: ⌊(i √800/9)²⌋.
        assert_eq!(ten(Quadratic), [800, 632, 483, 355, 246, 158, 88, 39, 9, 0]);
    }

    /// S = 50: diffusers' values (DDIMScheduler.set_timesteps(50) with each
    /// spacing), and its issues' cases: the step after 999 under trailing
    /// spacing goes to 979, not 999 − 20 = 979 by luck but 979 because it
    /// is the next entry; under linspace the gaps are 20 and 21 (a fixed
    /// `t − T/S` is wrong there).
    #[test]
    fn fifty_steps() {
        let linspace = Linspace.timesteps(1000, 50, 0).unwrap();
        assert_eq!(&linspace[..4], [999, 979, 958, 938]);
        assert_eq!(&linspace[46..], [61, 41, 20, 0]);
        let leading = Leading.timesteps(1000, 50, 0).unwrap();
        assert_eq!(&leading[..3], [980, 960, 940]);
        assert_eq!(leading[49], 0);
        let trailing = Trailing.timesteps(1000, 50, 0).unwrap();
        assert_eq!(&trailing[..3], [999, 979, 959]);
        assert_eq!(trailing[49], 19);
        let gaps: Vec<usize> = linspace.windows(2).map(|w| w[0] - w[1]).collect();
        assert!(gaps.contains(&20) && gaps.contains(&21), "{gaps:?}");
        // Quadratic squares repeat near 0 for S = 50; each is moved up.
        let quadratic = Quadratic.timesteps(1000, 50, 0).unwrap();
        assert_eq!(quadratic.len(), 50);
        assert!(quadratic.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(quadratic[0], 800);
        // 1000 steps of 1000 visit every timestep.
        for spacing in [Leading, Trailing, Linspace] {
            assert_eq!(
                spacing.timesteps(1000, 1000, 0).unwrap(),
                (0..1000).rev().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn bad_step_counts_are_refused() {
        for spacing in TimestepSpacing::ALL {
            assert!(spacing.timesteps(1000, 0, 0).is_err());
            let err = spacing.timesteps(1000, 1001, 0).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("between 1 and T = 1000")),
                "{err:?}"
            );
            assert!(spacing.timesteps(1, 1, 0).is_ok());
        }
        assert!(Leading.timesteps(1000, 10, 100).is_err());
        assert!(Trailing.timesteps(1000, 10, 1).is_err());
        assert!("uniform".parse::<TimestepSpacing>().is_err());
        assert_eq!("trailing".parse::<TimestepSpacing>().ok(), Some(Trailing));
    }
}
