use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
pub struct Args {
    /// A folder of results (`pillarq run`'s --out, or one holding some of sensitivity.json,
    /// candidates.json, engines/, ap.json, bench.json, calib-sweep.json).
    pub dir: PathBuf,
    /// Print results.json.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let (results, written) = crate::report::write(&a.dir)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    println!("{}", written.html.display());
    println!("{} (plots in {})", written.markdown.display(), a.dir.join("plots").display());
    println!("{}", written.results.display());
    for m in &results.missing {
        println!("  not in the report: {}: {}", m.section, m.why);
    }
    Ok(())
}
