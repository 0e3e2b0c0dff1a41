//! PTQ recipes: the steps beyond plain calibration that `--recipe R` selects (issue 14). R is
//! `none` (plain calibration), `all` (every implemented step), or a comma list of steps.
//!
//! Statistics (`quant::calibrate::Observers`):
//! - `sparse`: each layer input's histogram leaves out the positions no point reaches: the values
//!   an empty scene gives there (per channel). On the BEV canvas these are the empty pillars'
//!   zeros; further down, the constants that only bias and padding produce over empty ground.
//!   They are most of every early map and pull percentile and mse thresholds (and the maxima of
//!   later maps' statistics) toward values that carry no detection.
//! - `sparse-zeros`: `sparse`, and every exact zero left out as well (Relu's zeros inside occupied
//!   regions too).
//!
//! Refinement (`quant::refine`, after the thresholds are calibrated):
//! - `equalize`: per-feature equalization of the pillar feature net's input.
//! - `thresholds`: each layer's threshold chosen from a grid around the calibrator's by the error
//!   it causes at the heads on the anchors the FP32 model (or the quantized one) is confident on.
//! - `rounding`: GPTQ weight rounding against each layer's output error on its calibration inputs.
//! - `bias`: bias correction, the mean error INT8 adds per output channel taken out of the bias.

use std::fmt;
use std::str::FromStr;

/// Which values the layer inputs' histograms leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zeros {
    /// Every value counts (plain calibration).
    #[default]
    Keep,
    /// The values of positions no point reaches (what an empty scene gives there).
    Background,
    /// Those, and every exact zero.
    BackgroundAndZeros,
}

/// The steps of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recipe {
    pub zeros: Zeros,
    pub equalize: bool,
    pub thresholds: bool,
    pub rounding: bool,
    pub bias: bool,
}

const STEPS: &str = "sparse, sparse-zeros, equalize, thresholds, rounding, bias";

/// The recipe the quantization commands use unless told otherwise (docs/ptq.md, "PTQ recipes":
/// within 2 mAP of FP32 in full INT8 with every calibrator on the small model, and cheap; the
/// threshold search and bias correction did not help reliably).
pub const DEFAULT_RECIPE: &str = "sparse,equalize,rounding";

impl Recipe {
    pub fn none() -> Recipe {
        Recipe::default()
    }

    /// `DEFAULT_RECIPE`.
    pub fn default_recipe() -> Recipe {
        DEFAULT_RECIPE.parse().unwrap_or_default()
    }

    pub fn is_none(&self) -> bool {
        *self == Recipe::none()
    }

    /// Whether a refinement step (`quant::refine`) is on: the calibration then needs the
    /// calibration frames again after its thresholds are computed.
    pub fn refines(&self) -> bool {
        self.equalize || self.thresholds || self.rounding || self.bias
    }

    /// The canonical name in a form fit for file names (`+` between steps).
    pub fn file_tag(&self) -> String {
        self.to_string().replace(',', "+")
    }
}

impl FromStr for Recipe {
    type Err = String;
    fn from_str(s: &str) -> Result<Recipe, String> {
        let mut r = Recipe::none();
        for step in s.split(',').map(str::trim) {
            match step {
                "none" if s.trim() == "none" => {}
                "all" => {
                    if r.zeros == Zeros::Keep {
                        r.zeros = Zeros::Background;
                    }
                    r.equalize = true;
                    r.thresholds = true;
                    r.rounding = true;
                    r.bias = true;
                }
                "sparse" if r.zeros != Zeros::BackgroundAndZeros => r.zeros = Zeros::Background,
                "sparse" => {}
                "sparse-zeros" => r.zeros = Zeros::BackgroundAndZeros,
                "equalize" => r.equalize = true,
                "thresholds" => r.thresholds = true,
                "bias" => r.bias = true,
                "rounding" => r.rounding = true,
                other => {
                    return Err(format!("unknown recipe step '{other}': use none, all, or a comma list of {STEPS}"))
                }
            }
        }
        Ok(r)
    }
}

impl fmt::Display for Recipe {
    /// The canonical name: `none`, or the steps in a fixed order (provenance; `file_tag` for
    /// file names).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut steps = vec![];
        match self.zeros {
            Zeros::Keep => {}
            Zeros::Background => steps.push("sparse"),
            Zeros::BackgroundAndZeros => steps.push("sparse-zeros"),
        }
        for (on, name) in [
            (self.equalize, "equalize"),
            (self.thresholds, "thresholds"),
            (self.rounding, "rounding"),
            (self.bias, "bias"),
        ] {
            if on {
                steps.push(name);
            }
        }
        if steps.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&steps.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_parse_to_their_canonical_names() {
        for (text, name) in [
            ("none", "none"),
            ("all", "sparse,equalize,thresholds,rounding,bias"),
            ("sparse", "sparse"),
            ("sparse-zeros", "sparse-zeros"),
            ("sparse,sparse-zeros", "sparse-zeros"),
            ("sparse-zeros,sparse", "sparse-zeros"),
            ("sparse-zeros,all", "sparse-zeros,equalize,thresholds,rounding,bias"),
            ("rounding,sparse", "sparse,rounding"),
            ("bias,sparse,equalize", "sparse,equalize,bias"),
            ("thresholds", "thresholds"),
        ] {
            let r = text.parse::<Recipe>().unwrap();
            assert_eq!(r.to_string(), name, "{text}");
            // The canonical name parses back to the same recipe.
            assert_eq!(name.parse::<Recipe>().unwrap(), r, "{name}");
        }
        assert_eq!("all".parse::<Recipe>().unwrap().file_tag(), "sparse+equalize+thresholds+rounding+bias");
        assert!("sparse,none".parse::<Recipe>().unwrap_err().contains("unknown recipe step 'none'"));
        assert!("fast".parse::<Recipe>().unwrap_err().contains("unknown recipe step 'fast'"));
    }
}
