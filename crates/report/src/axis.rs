//! How one parameter is laid out on a chart axis: linear, log or categorical.

use nightshift_search::{Distribution, ParamValue};
use serde::Serialize;

/// A parameter's axis. Charts and the importance forest work in *plot coordinates*: the value itself
/// for linear axes, log10 of it for log axes, and the choice index for categoricals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamAxis {
    /// The parameter's name.
    pub name: String,
    /// How its values map to plot coordinates.
    pub scale: AxisScale,
}

/// How an axis maps values to plot coordinates.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AxisScale {
    /// The value itself. `integer` axes give each whole value a unit-wide cell (low − ½ … high + ½).
    Linear {
        /// The lowest value.
        low: f64,
        /// The highest value.
        high: f64,
        /// Whether the values are whole numbers.
        integer: bool,
    },
    /// log10 of the value.
    Log {
        /// The lowest value (not its logarithm).
        low: f64,
        /// The highest value (not its logarithm).
        high: f64,
    },
    /// The index of the value among the choices.
    Categorical {
        /// The choices, in declared order.
        choices: Vec<ParamValue>,
    },
}

impl ParamAxis {
    /// The axis for a declared distribution.
    pub fn from_distribution(name: &str, dist: &Distribution) -> ParamAxis {
        let scale = match dist {
            Distribution::Float { low, high, log: true, .. } => AxisScale::Log { low: *low, high: *high },
            Distribution::Int { low, high, log: true, .. } => AxisScale::Log { low: *low as f64, high: *high as f64 },
            Distribution::Float { low, high, .. } => AxisScale::Linear { low: *low, high: *high, integer: false },
            Distribution::Int { low, high, .. } => AxisScale::Linear { low: *low as f64, high: *high as f64, integer: true },
            Distribution::Categorical { choices } => AxisScale::Categorical { choices: choices.clone() },
        };
        ParamAxis { name: name.to_string(), scale }
    }

    /// Widens a numeric axis to cover an observed value (trials may predate a narrowed space).
    pub fn include(&mut self, value: &ParamValue) {
        match (&mut self.scale, value.as_f64()) {
            (AxisScale::Linear { low, high, .. }, Some(x)) if x.is_finite() => {
                *low = low.min(x);
                *high = high.max(x);
            }
            (AxisScale::Log { low, high }, Some(x)) if x > 0.0 && x.is_finite() => {
                *low = low.min(x);
                *high = high.max(x);
            }
            (AxisScale::Categorical { choices }, _) if !choices.contains(value) => choices.push(value.clone()),
            _ => {}
        }
    }

    /// Whether the axis is categorical (one cell per choice).
    pub fn is_categorical(&self) -> bool {
        matches!(self.scale, AxisScale::Categorical { .. })
    }

    /// Whether the axis is on a log scale.
    pub fn is_log(&self) -> bool {
        matches!(self.scale, AxisScale::Log { .. })
    }

    /// The value in plot coordinates; `None` when it cannot be placed (wrong type, ≤ 0 on a log axis).
    pub fn to_plot(&self, value: &ParamValue) -> Option<f64> {
        match &self.scale {
            AxisScale::Linear { .. } => value.as_f64().filter(|x| x.is_finite()).map(|x| x.clamp(-PLOT_LIMIT, PLOT_LIMIT)),
            AxisScale::Log { .. } => value.as_f64().filter(|x| *x > 0.0 && x.is_finite()).map(f64::log10),
            AxisScale::Categorical { choices } => choices.iter().position(|c| c == value).map(|i| i as f64),
        }
    }

    /// The axis range in plot coordinates (never empty).
    pub fn plot_range(&self) -> (f64, f64) {
        let (lo, hi) = match &self.scale {
            AxisScale::Linear { low, high, integer: true } => (low - 0.5, high + 0.5),
            AxisScale::Linear { low, high, integer: false } => (*low, *high),
            AxisScale::Log { low, high } => (low.log10(), high.log10()),
            AxisScale::Categorical { choices } => (-0.5, choices.len().max(1) as f64 - 0.5),
        };
        plottable(if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) })
    }

    /// A tick label for a plot coordinate; empty where no label belongs (between categories or
    /// between whole numbers of an integer axis).
    pub fn tick_label(&self, x: f64) -> String {
        let whole = (x - x.round()).abs() < 1e-6;
        match &self.scale {
            AxisScale::Linear { integer: true, .. } if !whole => String::new(),
            AxisScale::Linear { .. } => fmt_num(x),
            AxisScale::Log { .. } => fmt_num(10f64.powf(x)),
            AxisScale::Categorical { choices } => {
                if whole && x.round() >= 0.0 {
                    choices.get(x.round() as usize).map(|c| c.to_string()).unwrap_or_default()
                } else {
                    String::new()
                }
            }
        }
    }

    /// "learning_rate (log scale)", "optimizer (categorical)", "freeze_depth".
    pub fn label(&self) -> String {
        match self.scale {
            AxisScale::Log { .. } => format!("{} (log scale)", self.name),
            AxisScale::Categorical { .. } => format!("{} (categorical)", self.name),
            AxisScale::Linear { .. } => self.name.clone(),
        }
    }
}

/// A number in at most five significant digits, scientific outside [1e-3, 1e5).
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "∞".into()
        } else {
            "-∞".into()
        };
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{x:.2e}");
        // 1.00e-5 → 1e-5, 2.50e-4 → 2.5e-4
        return match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim_zeros(m)),
            None => s,
        };
    }
    let decimals = (4 - a.log10().floor() as i32).clamp(0, 7) as usize;
    trim_zeros(&format!("{x:.decimals$}")).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s }
}

/// Charts draw values beyond ±this at ±this (tables keep them as they are): plotters maps a value
/// to pixels through (value − low) × pixels, which must stay finite; see [`plottable`].
pub(crate) const PLOT_LIMIT: f64 = 1e150;

/// A range plotters can draw: its key-point search never ends on a width that overflows (values
/// near ±f64::MAX, a failure penalty say) and divides by one that underflows (a range of 1e-320).
/// Ends are clamped to ±1e300, and a range too thin to tick is widened around its middle.
pub(crate) fn plottable((lo, hi): (f64, f64)) -> (f64, f64) {
    let (lo, hi) = (lo.clamp(-PLOT_LIMIT, PLOT_LIMIT), hi.clamp(-PLOT_LIMIT, PLOT_LIMIT));
    let scale = lo.abs().max(hi.abs());
    if hi - lo > 1e-12 * scale && hi - lo > 1e-200 {
        return (lo, hi);
    }
    let mid = 0.5 * lo + 0.5 * hi;
    let pad = (0.05 * scale).max(0.05);
    (mid - pad, mid + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(fmt_num(0.912345678), "0.91235");
        assert_eq!(fmt_num(123.456), "123.46");
        assert_eq!(fmt_num(2.0), "2");
        assert_eq!(fmt_num(1e-5), "1e-5");
        assert_eq!(fmt_num(0.00025), "2.5e-4");
        assert_eq!(fmt_num(-0.5), "-0.5");
        assert_eq!(fmt_num(1234567.0), "1.23e6");
    }

    #[test]
    fn axes_map_values_to_plot_coordinates() {
        let log = ParamAxis::from_distribution("lr", &Distribution::Float { low: 1e-5, high: 1e-1, log: true, step: None });
        assert_eq!(log.to_plot(&ParamValue::Float(1e-3)), Some(-3.0));
        assert_eq!(log.plot_range(), (-5.0, -1.0));
        assert_eq!(log.tick_label(-4.0), "1e-4");
        let cat = ParamAxis::from_distribution(
            "opt",
            &Distribution::Categorical { choices: vec![ParamValue::Str("adam".into()), ParamValue::Str("sgd".into())] },
        );
        assert_eq!(cat.to_plot(&ParamValue::Str("sgd".into())), Some(1.0));
        assert_eq!(cat.plot_range(), (-0.5, 1.5));
        assert_eq!(cat.tick_label(1.0), "sgd");
        assert_eq!(cat.tick_label(0.5), "");
        let int = ParamAxis::from_distribution("k", &Distribution::Int { low: 0, high: 4, log: false, step: 1 });
        assert_eq!(int.plot_range(), (-0.5, 4.5));
        assert_eq!(int.tick_label(2.0), "2");
        assert_eq!(int.tick_label(2.5), "");
    }
}
