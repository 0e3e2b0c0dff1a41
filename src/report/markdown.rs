//! report.md: the report's tables in Markdown, the plots as plots/<id>.svg beside it.

use std::fmt::Write;

use super::html::{build_status, fp_list, num};
use super::{ap_columns, Results};

pub fn render(r: &Results) -> String {
    let mut out = String::from("# pillarq report\n\n");
    let p = &r.provenance;
    let _ = writeln!(
        out,
        "Model `{}` (SHA-256 `{}`), data `{}` split `{}`, {} frames; pillarq {}.\n",
        p["model"]["file"].as_str().unwrap_or("?"),
        p["model"]["sha256"].as_str().unwrap_or("?"),
        p["data"]["root"].as_str().unwrap_or("?"),
        p["data"]["split"].as_str().unwrap_or("?"),
        r.frames.map_or("?".into(), |f| f.to_string()),
        r.pillarq_version
    );
    let _ = writeln!(out, "FP32 mAP **{}**, full INT8 **{}**.", num(r.fp32_map, 2), num(r.int8_map, 2));
    if let Some(b) = r.engines.iter().find(|e| e.best) {
        let _ = writeln!(
            out,
            "Best: **{}**, mAP {}, {:.1} % of MACs in INT8, {:.2} MB of weights.",
            b.name,
            num(b.map, 2),
            100.0 * b.int8_mac_fraction,
            b.weight_bytes as f64 / 1e6
        );
    }
    if !r.engines.is_empty() {
        out.push_str("\n## Per-class AP (3D, R40)\n\n| engine | mAP |");
        let cols = ap_columns();
        for (c, d) in &cols {
            let _ = write!(out, " {c} {d} |");
        }
        out.push_str(" INT8 MACs | weights MB |\n|---|---:|");
        out.push_str(&"---:|".repeat(cols.len() + 2));
        out.push('\n');
        for e in &r.engines {
            let _ = write!(out, "| {}{} | {} |", e.name, if e.best { " (best)" } else { "" }, num(e.map, 2));
            for (c, d) in &cols {
                let _ = write!(
                    out,
                    " {} |",
                    num(e.ap_3d_r40.as_ref().and_then(|a| a.get(*c)).and_then(|m| m.get(*d)).copied(), 2)
                );
            }
            let _ = writeln!(out, " {:.1} % | {:.2} |", 100.0 * e.int8_mac_fraction, e.weight_bytes as f64 / 1e6);
        }
    }
    if !r.figures.is_empty() {
        out.push_str("\n## Plots\n\n");
        for f in &r.figures {
            let _ = writeln!(out, "![{}](plots/{}.svg)\n", f.title, f.id);
        }
    }
    if !r.engines.is_empty() {
        out.push_str("## Engines\n\n| engine | directory | floating-point layers | latency ms | build (in engines/) |\n|---|---|---|---:|---|\n");
        for e in &r.engines {
            let fp = fp_list(e);
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | `{}` (TensorRT 10), `{}` (TensorRT 11); {} |",
                e.name,
                e.dir,
                fp,
                num(e.latency.as_ref().map(|l| l.median_ms), 2),
                e.build_trt10,
                e.build_trt11,
                build_status(e)
            );
        }
    }
    if !r.layers.is_empty() {
        out.push_str("\n## Layers\n\n| # | node | op | MMACs | AP drop | rank |");
        for e in &r.engines {
            let _ = write!(out, " {} |", e.name);
        }
        out.push_str("\n|---:|---|---|---:|---:|---:|");
        out.push_str(&"---|".repeat(r.engines.len()));
        out.push('\n');
        for l in &r.layers {
            let _ = write!(
                out,
                "| {} | `{}` | {} | {:.1} | {} | {} |",
                l.index,
                l.name,
                l.op,
                l.macs as f64 / 1e6,
                num(l.drop, 2),
                l.rank.map_or("–".into(), |k| k.to_string())
            );
            for e in &r.engines {
                let _ = write!(out, " {} |", l.precision.get(&e.name).map(String::as_str).unwrap_or("–"));
            }
            out.push('\n');
        }
    }
    if !r.missing.is_empty() {
        out.push_str("\n## Not in this report\n\n");
        for m in &r.missing {
            let _ = writeln!(out, "- **{}**: {}", m.section, m.why);
        }
    }
    out
}
