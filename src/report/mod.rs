//! `pillarq report DIR`: the results of a run (or any folder holding some of them) as
//! `report.html` (one self-contained file: inline CSS and SVG, no script, no network),
//! `report.md` with its plots as SVG files beside it in `plots/`, and `results.json`, a stable
//! machine-readable summary (keys in docs/report.md).
//!
//! Files read, each optional (a missing one leaves its sections out, saying why):
//! `pipeline.yaml` (the run's settings), `sensitivity.json`, `candidates.json`,
//! `engines/index.json` with each engine's `emit.json` (and `verify.json` after `pillarq build`),
//! `ap.json` (per-class AP of every engine), `bench.json`, `calib-sweep.json`.

pub mod figure;
mod html;
mod inputs;
mod markdown;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::kitti::eval::{CLASSES, DIFFICULTIES};
use figure::{Figure, Kind, Point, Series};
pub use inputs::{read_index, Inputs};

/// Version of results.json's layout; bumped when a documented key changes meaning.
pub const SCHEMA: u32 = 1;

/// 3D AP (R40) per class and difficulty, in percent.
pub type ClassAp = BTreeMap<String, BTreeMap<String, f64>>;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub backend: String,
    pub device: String,
    pub median_ms: f64,
    pub p99_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_median_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorrt: Option<String>,
    pub ok: usize,
    pub mismatches: usize,
    pub not_found: usize,
    pub unknown: usize,
}

/// One emitted engine directory (fp32, fp16, int8 and the search's candidates).
#[derive(Debug, Clone, Serialize)]
pub struct Engine {
    pub name: String,
    pub dir: String,
    /// Layers in floating point (empty: full INT8, or a uniform FP plan).
    pub fp_layers: Vec<String>,
    /// mAP of pillarq's simulation on the run's frames: from ap.json, else what the search measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<f64>,
    pub int8_mac_fraction: f64,
    pub weight_bytes: u64,
    /// The search's best within its tolerance.
    pub best: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ap_3d_r40: Option<ClassAp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildCheck>,
    /// Build commands (relative to the engine directory's parent).
    pub build_trt10: String,
    pub build_trt11: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub index: usize,
    pub op: String,
    pub macs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_sqnr_db: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_rel_mse: Option<f64>,
    /// Precision in each engine, by engine name.
    pub precision: BTreeMap<String, String>,
}

/// A section left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub section: String,
    pub why: String,
}

/// results.json.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub schema: u32,
    pub pillarq_version: String,
    pub provenance: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fp32_map: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8_map: Option<f64>,
    /// Frames the mAPs are measured on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<usize>,
    /// The best engine's name (the search's best within its tolerance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best: Option<String>,
    pub engines: Vec<Engine>,
    pub layers: Vec<LayerRow>,
    pub figures: Vec<Figure>,
    pub missing: Vec<Missing>,
}

fn pt(x: f64, y: f64, label: Option<String>) -> Point {
    Point { x, y, label }
}

/// The last path component of a node name, for labels ("/backbone/blocks.0/blocks.0.4/Conv" ->
/// "blocks.0.4/Conv").
pub fn short(name: &str) -> String {
    let parts: Vec<&str> = name.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [.., a, b] => format!("{a}/{b}"),
        _ => name.to_string(),
    }
}

impl Results {
    pub fn from_inputs(i: &Inputs) -> Results {
        let mut missing = i.missing.clone();
        let ap_of = |name: &str| i.ap.as_ref().and_then(|a| a.engines.get(name));
        let engines: Vec<Engine> = i
            .index
            .iter()
            .map(|e| {
                let ap = ap_of(&e.name);
                let int8 = e.int8_mac_fraction.unwrap_or(0.0);
                Engine {
                    name: e.name.clone(),
                    // Relative to the results folder (index.json holds the path emit was given).
                    dir: format!("engines/{}", e.name),
                    fp_layers: e.fp_layers.clone(),
                    map: ap.map(|a| a.map).or(e.map),
                    int8_mac_fraction: int8,
                    weight_bytes: e.weight_bytes,
                    best: e.best,
                    ap_3d_r40: ap.map(|a| a.class_ap_3d_r40()),
                    latency: i.bench.get(&e.name).map(|b| Latency {
                        backend: b.backend.clone(),
                        device: b.device.clone(),
                        median_ms: b.median_ms,
                        p99_ms: b.p99_ms,
                        e2e_median_ms: b.e2e_median_ms,
                    }),
                    build: i.verify.get(&e.name).map(|v| BuildCheck {
                        tensorrt: v.tensorrt.as_ref().map(trt_version),
                        ok: v.ok,
                        mismatches: v.mismatches,
                        not_found: v.not_found,
                        unknown: v.unknown,
                    }),
                    build_trt10: format!("bash {}/build-trt10.sh", e.name),
                    build_trt11: format!("bash {}/build-trt11.sh", e.name),
                }
            })
            .collect();
        if i.ap.is_none() && !engines.is_empty() {
            missing.push(Missing {
                section: "per-class AP".into(),
                why: "ap.json is missing: the evaluate stage did not run (the table shows the search's mAP only)"
                    .into(),
            });
        }
        let layers = layer_rows(i);
        let figures = figures(i, &engines, &mut missing);
        let fp32_map =
            i.ap.as_ref()
                .and_then(|a| a.engines.get("fp32"))
                .map(|a| a.map)
                .or_else(|| i.candidates.as_ref().map(|c| c.fp32_map).or(i.sensitivity.as_ref().map(|s| s.fp32_map)));
        let int8_map =
            i.ap.as_ref()
                .and_then(|a| a.engines.get("int8"))
                .map(|a| a.map)
                .or_else(|| i.candidates.as_ref().map(|c| c.int8_map).or(i.sensitivity.as_ref().map(|s| s.int8_map)));
        Results {
            schema: SCHEMA,
            pillarq_version: env!("CARGO_PKG_VERSION").to_string(),
            provenance: i.provenance(),
            fp32_map,
            int8_map,
            frames: i.ap.as_ref().map(|a| a.frames).or(i.sensitivity.as_ref().map(|s| s.frames)),
            best: engines.iter().find(|e| e.best).map(|e| e.name.clone()),
            engines,
            layers,
            figures,
            missing,
        }
    }
}

/// "10.3.0" from verify.json's `{"major": 10, "minor": 3, "patch": 0}`.
fn trt_version(v: &serde_json::Value) -> String {
    match (v["major"].as_u64(), v["minor"].as_u64(), v["patch"].as_u64()) {
        (Some(a), Some(b), Some(c)) => format!("{a}.{b}.{c}"),
        _ => v.to_string(),
    }
}

fn layer_rows(i: &Inputs) -> Vec<LayerRow> {
    // Graph order from the sensitivity report, else from the first engine's emit.json.
    let mut rows: Vec<LayerRow> = match &i.sensitivity {
        Some(s) => {
            let mut v: Vec<_> = s.layers.iter().collect();
            v.sort_by_key(|l| l.index);
            v.iter()
                .map(|l| LayerRow {
                    name: l.name.clone(),
                    index: l.index,
                    op: String::new(),
                    macs: l.flops / 2,
                    drop: Some(l.drop),
                    rank: Some(l.rank),
                    head_sqnr_db: l.head_sqnr_db.filter(|v| v.is_finite()),
                    layer_rel_mse: l.layer_rel_mse,
                    precision: BTreeMap::new(),
                })
                .collect()
        }
        None => i
            .emits
            .values()
            .next()
            .map(|m| {
                m.layers
                    .iter()
                    .enumerate()
                    .map(|(k, l)| LayerRow {
                        name: l.name.clone(),
                        index: k,
                        op: l.op.clone(),
                        macs: 0,
                        drop: None,
                        rank: None,
                        head_sqnr_db: None,
                        layer_rel_mse: None,
                        precision: BTreeMap::new(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    for r in &mut rows {
        for (engine, m) in &i.emits {
            if let Some(l) = m.layers.iter().find(|l| l.name == r.name) {
                r.op.clone_from(&l.op);
                r.precision.insert(engine.clone(), l.precision.clone());
            }
        }
    }
    rows
}

fn figures(i: &Inputs, engines: &[Engine], missing: &mut Vec<Missing>) -> Vec<Figure> {
    let mut out = Vec::new();
    match &i.sensitivity {
        Some(s) => {
            let mut layers: Vec<_> = s.layers.iter().collect();
            layers.sort_by_key(|l| l.index);
            out.push(Figure {
                id: "layer_drop".into(),
                title: format!("mAP lost with one layer in INT8 ({} frames)", s.frames),
                x_label: "layer (graph order; names in the layer table)".into(),
                y_label: "mAP drop".into(),
                x_log: false,
                series: vec![Series {
                    name: "AP drop".into(),
                    kind: Kind::Bars,
                    points: layers.iter().map(|l| pt(l.index as f64, l.drop, Some(short(&l.name)))).collect(),
                    band: vec![],
                }],
                hlines: vec![],
            });
            out.push(Figure {
                id: "layer_proxies".into(),
                title: "Proxies: head-output SQNR with one layer in INT8".into(),
                x_label: "layer (graph order)".into(),
                y_label: "head SQNR (dB)".into(),
                x_log: false,
                series: vec![Series {
                    name: "head SQNR".into(),
                    kind: Kind::Bars,
                    points: layers
                        .iter()
                        .filter_map(|l| l.head_sqnr_db.filter(|v| v.is_finite()).map(|v| pt(l.index as f64, v, None)))
                        .collect(),
                    band: vec![],
                }],
                hlines: vec![],
            });
        }
        None => missing.push(Missing {
            section: "per-layer sensitivity".into(),
            why: "sensitivity.json is missing: the sensitivity stage did not run".into(),
        }),
    }
    match &i.candidates {
        Some(c) => {
            let start = pt(100.0, c.int8_map, Some("full INT8".into()));
            let path = |cands: &[inputs::CandidateIn], label: &dyn Fn(&inputs::CandidateIn) -> String| {
                std::iter::once(start.clone())
                    .chain(cands.iter().map(|k| pt(100.0 * k.int8_mac_fraction, k.map, Some(label(k)))))
                    .collect::<Vec<_>>()
            };
            let last =
                |k: &inputs::CandidateIn| k.fp_layers.last().map(|l| format!("+{}", short(l))).unwrap_or_default();
            let mut hlines = vec![(c.fp32_map, "FP32".to_string())];
            if let Some(t) = c.tolerance {
                hlines.push((c.fp32_map - t, format!("FP32 - {t}")));
            }
            out.push(Figure {
                id: "greedy_path".into(),
                title: format!("Greedy {} fallback vs baselines", c.fallback.to_uppercase()),
                x_label: "INT8 share of MACs (%)".into(),
                y_label: "mAP".into(),
                x_log: false,
                series: vec![
                    Series {
                        name: "prefix".into(),
                        kind: Kind::Line,
                        points: path(&c.prefix.candidates, &last),
                        band: vec![],
                    },
                    Series {
                        name: "bisect".into(),
                        kind: Kind::Points,
                        points: c
                            .bisect
                            .candidates
                            .iter()
                            .map(|k| {
                                pt(100.0 * k.int8_mac_fraction, k.map, Some(format!("first {}", k.fp_layers.len())))
                            })
                            .collect(),
                        band: vec![],
                    },
                    Series {
                        name: "greedy".into(),
                        kind: Kind::Line,
                        points: path(&c.candidates, &last),
                        band: vec![],
                    },
                ],
                hlines,
            });
        }
        None => missing.push(Missing {
            section: "greedy search".into(),
            why: "candidates.json is missing: the search stage did not run".into(),
        }),
    }
    let scored: Vec<&Engine> = engines.iter().filter(|e| e.map.is_some()).collect();
    if scored.is_empty() {
        missing.push(Missing {
            section: "Pareto fronts".into(),
            why: "no engine with a measured mAP (engines/index.json or ap.json missing)".into(),
        });
    } else {
        out.push(pareto("pareto_size", "mAP against weight size", "weights (MB)", &scored, |e| {
            Some(e.weight_bytes as f64 / 1e6)
        }));
        if scored.iter().any(|e| e.latency.is_some()) {
            let b = scored.iter().find_map(|e| e.latency.as_ref()).map(|l| format!("{} on {}", l.backend, l.device));
            out.push(pareto(
                "pareto_latency",
                &format!("mAP against latency ({})", b.unwrap_or_default()),
                "median network latency (ms)",
                &scored,
                |e| e.latency.as_ref().map(|l| l.median_ms),
            ));
        } else {
            missing.push(Missing {
                section: "latency".into(),
                why: "bench.json is missing: the bench stage did not run".into(),
            });
        }
    }
    match &i.sweep {
        Some(s) => {
            let mut methods: Vec<&str> = s.cells.iter().map(|c| c.method.as_str()).collect();
            methods.dedup();
            let series = methods
                .iter()
                .map(|m| {
                    let mut cells: Vec<_> = s.cells.iter().filter(|c| c.method == *m).collect();
                    cells.sort_by_key(|c| c.n);
                    Series {
                        name: (*m).to_string(),
                        kind: Kind::Line,
                        points: cells.iter().map(|c| pt(c.n as f64, c.mean, None)).collect(),
                        band: cells.iter().map(|c| [c.n as f64, c.min, c.max]).collect(),
                    }
                })
                .collect();
            out.push(Figure {
                id: "calib_sweep".into(),
                title: "Full INT8 mAP against calibration-set size (mean, min-max band)".into(),
                x_label: "calibration frames N".into(),
                y_label: "mAP".into(),
                x_log: true,
                series,
                hlines: vec![(s.fp32_map, "FP32".into())],
            });
        }
        None => missing.push(Missing {
            section: "calibration-set sweep".into(),
            why: "calib-sweep.json is missing: no calibration sweep ran (enable calib_sweep in the pipeline file)"
                .into(),
        }),
    }
    out
}

/// Engines as points (x from `x`), with the front of those no other beats on both mAP and x.
fn pareto(id: &str, title: &str, x_label: &str, engines: &[&Engine], x: impl Fn(&Engine) -> Option<f64>) -> Figure {
    let pts: Vec<Point> = engines.iter().filter_map(|e| Some(pt(x(e)?, e.map?, Some(e.name.clone())))).collect();
    let mut front: Vec<Point> = pts
        .iter()
        .filter(|p| !pts.iter().any(|q| q.x <= p.x && q.y >= p.y && (q.x < p.x || q.y > p.y)))
        .map(|p| Point { label: None, ..p.clone() })
        .collect();
    front.sort_by(|a, b| a.x.total_cmp(&b.x));
    Figure {
        id: id.into(),
        title: title.into(),
        x_label: x_label.into(),
        y_label: "mAP".into(),
        x_log: false,
        series: vec![
            Series { name: "engines".into(), kind: Kind::Points, points: pts, band: vec![] },
            Series { name: "Pareto front".into(), kind: Kind::Line, points: front, band: vec![] },
        ],
        hlines: vec![],
    }
}

/// Files written by `write`.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub results: PathBuf,
    pub plots: Vec<PathBuf>,
}

/// Reads `dir` and writes report.html, report.md, plots/*.svg and results.json into it.
pub fn write(dir: &Path) -> Result<(Results, Written)> {
    let inputs = Inputs::read(dir)?;
    let results = Results::from_inputs(&inputs);
    let mut svgs = Vec::new();
    for f in &results.figures {
        svgs.push(f.svg().map_err(Error::Other)?);
    }
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| Error::Io { path: plots_dir.clone(), source })?;
    // Plots of an earlier report that this one leaves out go.
    if let Ok(rd) = std::fs::read_dir(&plots_dir) {
        for e in rd.flatten() {
            let p = e.path();
            let keep =
                results.figures.iter().any(|f| p.file_name() == Some(std::ffi::OsStr::new(&format!("{}.svg", f.id))));
            if p.extension().is_some_and(|x| x == "svg") && !keep {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    let mut plots = Vec::new();
    for (f, svg) in results.figures.iter().zip(&svgs) {
        let p = plots_dir.join(format!("{}.svg", f.id));
        write_atomic(&p, svg.as_bytes())?;
        plots.push(p);
    }
    let html = dir.join("report.html");
    write_atomic(&html, html::render(&results, &svgs).as_bytes())?;
    let markdown = dir.join("report.md");
    write_atomic(&markdown, markdown::render(&results).as_bytes())?;
    let json = dir.join("results.json");
    let bytes = serde_json::to_vec_pretty(&results).map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(&json, &bytes)?;
    Ok((results, Written { html, markdown, results: json, plots }))
}

/// Column headers of the per-class table: class and difficulty.
pub fn ap_columns() -> Vec<(&'static str, &'static str)> {
    CLASSES.iter().flat_map(|c| DIFFICULTIES.iter().map(move |d| (*c, *d))).collect()
}
