//! Summary statistics of a sample set.

use serde::Serialize;

/// p50, p90, min, max and mean of a set of samples, plus the samples themselves.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub samples: Vec<f64>,
}

/// The `q` quantile (0..=1) of sorted samples, interpolating linearly between ranks.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor();
            let frac = pos - lo;
            // `pos` lies in [0, n-1], so both indices are in range.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = lo as usize;
            let next = sorted[(i + 1).min(n - 1)];
            sorted[i] + (next - sorted[i]) * frac
        }
    }
}

impl Summary {
    /// Summarises `samples` (kept in the order taken); None when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            n: samples.len(),
            p50: quantile(&sorted, 0.5),
            p90: quantile(&sorted, 0.9),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            samples: samples.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 1.0), 5.0);
        assert!((quantile(&s, 0.9) - 4.6).abs() < 1e-9);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn summary_keeps_order_of_samples() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).expect("non-empty");
        assert_eq!(s.samples, vec![3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.p50, s.max, s.n), (1.0, 2.0, 3.0, 3));
        assert!(Summary::of(&[]).is_none());
    }
}
