//! report.html: one self-contained page (inline CSS and SVG; no script, no external resource).

use std::fmt::Write;

use super::{ap_columns, short, Engine, Results};

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

const CSS: &str =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:26px}h2{margin:32px 0 8px;font-size:20px;border-bottom:2px solid #dde2e8;padding-bottom:4px}
.sub{color:#5b6572;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:12px 16px;min-width:170px}
.card b{display:block;font-size:24px}.card span{color:#5b6572;font-size:13px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:8px 0;width:100%}
th,td{border:1px solid #dde2e8;padding:4px 8px;text-align:right}th{background:#eef1f5}
td.l,th.l{text-align:left}tr.best td{background:#e8f6ea;font-weight:600}
.fig{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:8px;margin:12px 0}
.fig svg{max-width:100%;height:auto;display:block;margin:0 auto}
details{margin:4px 8px;font-size:13px}code{background:#eef1f5;padding:1px 4px;border-radius:3px;font-size:12px}
.missing{color:#8a5a00;background:#fff7e6;border:1px solid #f0d9a8;border-radius:6px;padding:8px 12px;margin:8px 0}
.note{color:#5b6572;font-size:13px;margin:4px 8px}.p8{color:#1f77b4}.pf{color:#d62728}";

fn ap_table(r: &Results, out: &mut String) {
    let cols = ap_columns();
    out.push_str("<table id=\"ap\"><tr><th class=\"l\">engine</th><th>mAP</th>");
    for (c, d) in &cols {
        let _ = write!(out, "<th>{c}<br>{d}</th>");
    }
    out.push_str("<th>INT8 MACs</th><th>weights MB</th></tr>");
    for e in &r.engines {
        let _ = write!(
            out,
            "<tr{}><td class=\"l\">{}{}</td><td>{}</td>",
            if e.best { " class=\"best\"" } else { "" },
            esc(&e.name),
            if e.best { " (best)" } else { "" },
            num(e.map, 2)
        );
        for (c, d) in &cols {
            let v = e.ap_3d_r40.as_ref().and_then(|a| a.get(*c)).and_then(|m| m.get(*d)).copied();
            let _ = write!(out, "<td>{}</td>", num(v, 2));
        }
        let _ = write!(
            out,
            "<td>{:.1} %</td><td>{:.2}</td></tr>",
            100.0 * e.int8_mac_fraction,
            e.weight_bytes as f64 / 1e6
        );
    }
    out.push_str("</table>");
}

fn engines_table(r: &Results, out: &mut String) {
    out.push_str(
        "<table id=\"engines\"><tr><th class=\"l\">engine</th><th class=\"l\">directory</th><th class=\"l\">layers in \
         floating point</th><th>latency ms</th><th class=\"l\">TensorRT build</th></tr>",
    );
    for e in &r.engines {
        let fp = esc(&fp_list(e));
        let lat = e.latency.as_ref().map_or("–".into(), |l| format!("{:.2} ({})", l.median_ms, esc(&l.backend)));
        let _ = write!(
            out,
            "<tr{}><td class=\"l\">{}</td><td class=\"l\"><code>{}</code></td><td class=\"l\">{fp}</td><td>{lat}</td><td \
             class=\"l\">{}<br><code>{}</code> (Jetson, TensorRT 10)<br><code>{}</code> (TensorRT 11)</td></tr>",
            if e.best { " class=\"best\"" } else { "" },
            esc(&e.name),
            esc(&e.dir),
            build_status(e),
            esc(&e.build_trt10),
            esc(&e.build_trt11),
        );
    }
    out.push_str("</table>");
}

/// The layers an engine keeps in floating point, for tables ("every layer" for uniform plans).
pub fn fp_list(e: &Engine) -> String {
    if e.fp_layers.is_empty() {
        "–".to_string()
    } else if e.int8_mac_fraction == 0.0 {
        "every layer".to_string()
    } else {
        e.fp_layers.iter().map(|l| short(l)).collect::<Vec<_>>().join(", ")
    }
}

pub fn build_status(e: &Engine) -> String {
    match &e.build {
        Some(b) if b.ok > 0 && b.mismatches == 0 && b.not_found == 0 && b.unknown == 0 => format!(
            "built and verified{}: {} layers at the planned precision",
            b.tensorrt.as_ref().map(|t| format!(" with TensorRT {t}")).unwrap_or_default(),
            b.ok
        ),
        Some(b) => format!(
            "built: {} layers as planned, {} at another precision, {} not found, {} of unknown precision",
            b.ok, b.mismatches, b.not_found, b.unknown
        ),
        None => "not built here (no verify.json)".into(),
    }
}

fn layer_table(r: &Results, out: &mut String) {
    let names: Vec<&str> = r.engines.iter().map(|e| e.name.as_str()).collect();
    out.push_str(
        "<table id=\"layers\"><tr><th>#</th><th class=\"l\">node</th><th class=\"l\">op</th><th>MMACs</th><th>AP \
         drop</th><th>rank</th><th>head SQNR dB</th>",
    );
    for n in &names {
        let _ = write!(out, "<th>{}</th>", esc(n));
    }
    out.push_str("</tr>");
    for l in &r.layers {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td>",
            l.index,
            esc(&l.name),
            esc(&l.op),
            l.macs as f64 / 1e6,
            num(l.drop, 2),
            l.rank.map_or("–".into(), |k| k.to_string()),
            num(l.head_sqnr_db, 1)
        );
        for n in &names {
            let p = l.precision.get(*n).map(String::as_str).unwrap_or("–");
            let class = if p == "int8" { "p8" } else { "pf" };
            let _ = write!(out, "<td class=\"{class}\">{}</td>", esc(p));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn provenance(r: &Results, out: &mut String) {
    let p = &r.provenance;
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "–".into(),
        other => other.to_string(),
    };
    let mut rows: Vec<(String, String)> = vec![];
    rows.push(("model".into(), s(&p["model"]["file"])));
    rows.push(("model SHA-256".into(), s(&p["model"]["sha256"])));
    if !p["config"].is_null() {
        rows.push(("configuration".into(), s(&p["config"])));
    }
    rows.push(("data".into(), format!("{} (split {})", s(&p["data"]["root"]), s(&p["data"]["split"]))));
    if let Some(f) = r.frames {
        rows.push(("frames scored".into(), f.to_string()));
    }
    let c = &p["calibration"];
    if !c.is_null() {
        rows.push((
            "calibration".into(),
            format!(
                "{} on {} frames{}{}",
                s(&c["method"]),
                s(&c["frames"]),
                c["seed"].as_u64().map(|v| format!(", seed {v}")).unwrap_or_default(),
                p["pipeline"]["calibration"]["recipe"].as_str().map(|r| format!(", recipe {r}")).unwrap_or_default()
            ),
        ));
    }
    rows.push(("pillarq".into(), r.pillarq_version.clone()));
    let m = &p["machine"];
    if !m.is_null() {
        rows.push((
            "machine".into(),
            format!("{}, {} cores, {} ({})", s(&m["cpu"]), s(&m["cores"]), s(&m["os"]), s(&m["arch"])),
        ));
    }
    out.push_str("<table id=\"provenance\">");
    for (k, v) in rows {
        let _ = write!(out, "<tr><th class=\"l\">{}</th><td class=\"l\">{}</td></tr>", esc(&k), esc(&v));
    }
    out.push_str("</table>");
    if !p["pipeline"].is_null() {
        let yaml = serde_json::to_string_pretty(&p["pipeline"]).unwrap_or_default();
        let _ = write!(out, "<details><summary>pipeline settings</summary><pre>{}</pre></details>", esc(&yaml));
    }
}

pub fn render(r: &Results, svgs: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>pillarq report</title><style>{CSS}</style></head><body><main>"
    );
    let model = r.provenance["model"]["file"].as_str().unwrap_or("model");
    let _ = write!(
        out,
        "<h1>pillarq report</h1><p class=\"sub\">{}: mixed-precision INT8 deployment candidates, scored by KITTI AP \
         (3D, R40) in pillarq's simulation of TensorRT's INT8 arithmetic</p>",
        esc(model)
    );
    out.push_str("<div class=\"cards\">");
    let card = |out: &mut String, v: String, label: &str| {
        let _ = write!(out, "<div class=\"card\"><b>{}</b><span>{}</span></div>", esc(&v), esc(label));
    };
    card(&mut out, num(r.fp32_map, 2), "FP32 mAP");
    card(&mut out, num(r.int8_map, 2), "full INT8 mAP");
    if let Some(b) = r.engines.iter().find(|e| e.best) {
        card(&mut out, num(b.map, 2), &format!("best: {}", b.name));
        card(&mut out, format!("{:.1} %", 100.0 * b.int8_mac_fraction), "best: INT8 share of MACs");
        card(&mut out, format!("{:.2} MB", b.weight_bytes as f64 / 1e6), "best: weights");
    }
    out.push_str("</div>");

    out.push_str("<h2>Provenance</h2>");
    provenance(r, &mut out);

    if !r.engines.is_empty() {
        out.push_str("<h2>Per-class AP (3D, R40): FP32, full INT8 and every candidate</h2>");
        ap_table(r, &mut out);
    }
    out.push_str("<h2>Plots</h2>");
    for (f, svg) in r.figures.iter().zip(svgs) {
        let _ = write!(out, "<div class=\"fig\" id=\"fig-{}\">{svg}", esc(&f.id));
        let _ = write!(
            out,
            "<details><summary>data</summary><table class=\"data\"><tr><th class=\"l\">series</th><th>{}</th><th>{}</th><th \
             class=\"l\">label</th></tr>",
            esc(&f.x_label),
            esc(&f.y_label)
        );
        for s in &f.series {
            for p in &s.points {
                let _ = write!(
                    out,
                    "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                    esc(&s.name),
                    p.x,
                    p.y,
                    esc(p.label.as_deref().unwrap_or(""))
                );
            }
        }
        out.push_str("</table></details>");
        let cpu = r.engines.iter().any(|e| e.latency.as_ref().is_some_and(|l| l.backend == "cpu"));
        if f.id == "pareto_latency" && cpu {
            out.push_str(
                "<p class=\"note\">CPU latencies time pillarq's executor, which simulates INT8 and FP16 in f32 \
                 (fake quantization): they compare plans' work on this machine, not TensorRT's speed. Bench the \
                 engines with <code>bench.backend: trtexec</code> on the target for deployment latency.</p>",
            );
        }
        out.push_str("</div>");
    }
    if !r.engines.is_empty() {
        out.push_str("<h2>Engines</h2><p>Build each directory on the target (commands run inside <code>engines/</code>), or \
                      <code>pillarq build engines/*/</code>, which also checks every layer's precision in the engine.</p>");
        engines_table(r, &mut out);
    }
    if !r.layers.is_empty() {
        out.push_str("<h2>Layers</h2>");
        layer_table(r, &mut out);
    }
    if !r.missing.is_empty() {
        out.push_str("<h2>Not in this report</h2>");
        for m in &r.missing {
            let _ = write!(out, "<p class=\"missing\"><b>{}</b>: {}</p>", esc(&m.section), esc(&m.why));
        }
    }
    out.push_str("</main></body></html>\n");
    out
}
