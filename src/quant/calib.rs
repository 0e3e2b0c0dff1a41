//! TEMPORARY shim until the calibrator module lands.

pub fn per_channel_amax(w: &[f32], shape: &[usize], axis: usize) -> Vec<f32> {
    let inner: usize = shape[axis + 1..].iter().product();
    let d = shape[axis];
    let mut m = vec![0f32; d];
    for (i, v) in w.iter().enumerate() {
        let c = (i / inner) % d;
        m[c] = m[c].max(v.abs());
    }
    m.into_iter().map(|x| if x > 0.0 { x } else { 1.0 }).collect()
}

pub fn fake_quant_slice(data: &mut [f32], scale: f32) {
    for x in data {
        *x = ((*x / scale).round_ties_even().clamp(-128.0, 127.0)) * scale;
    }
}

// ---- TEMPORARY shim API (replaced by the real module) ----
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Histogram {
    pub max: f32,
    pub min: f32,
    pub count: u64,
}
impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }
    pub fn observe(&mut self, d: &[f32]) {
        for &x in d {
            self.max = self.max.max(x);
            self.min = self.min.min(x);
        }
        self.count += d.len() as u64;
    }
    pub fn merge(&mut self, o: &Histogram) {
        self.max = self.max.max(o.max);
        self.min = self.min.min(o.min);
        self.count += o.count;
    }
    pub fn amax_observed(&self) -> f32 {
        self.max.abs().max(self.min.abs())
    }
}
#[derive(Debug, Clone, PartialEq)]
pub enum CalibMethod {
    Max,
    Percentile(f64),
    Entropy,
    Mse,
}
impl std::str::FromStr for CalibMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "max" => Ok(CalibMethod::Max),
            "entropy" => Ok(CalibMethod::Entropy),
            "mse" => Ok(CalibMethod::Mse),
            "percentile" => Ok(CalibMethod::Percentile(99.99)),
            _ => Err(format!("bad {s}")),
        }
    }
}
impl std::fmt::Display for CalibMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibMethod::Max => write!(f, "max"),
            CalibMethod::Percentile(p) => write!(f, "percentile:{p}"),
            CalibMethod::Entropy => write!(f, "entropy"),
            CalibMethod::Mse => write!(f, "mse"),
        }
    }
}
pub fn calibrate_amax(h: &Histogram, _m: &CalibMethod) -> f32 {
    h.amax_observed().max(1e-6)
}
pub fn trt_cache_text(header: &str, entries: &[(String, f32)]) -> String {
    let mut s = format!("{header}\n");
    for (n, v) in entries {
        s.push_str(&format!("{n}: {:08x}\n", v.to_bits()));
    }
    s
}
