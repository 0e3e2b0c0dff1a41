use std::path::PathBuf;

use anyhow::{Context, Result};

use super::bundled_model;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder for the demo's files.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Model to run (default: the bundled small model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(a: Args) -> Result<()> {
    let model_path = a.model.unwrap_or_else(|| bundled_model("pointpillars_small.onnx"));
    println!("== pillarq demo: {} ==\n", model_path.display());
    let model =
        crate::model::Model::load(&model_path).with_context(|| format!("cannot load {}", model_path.display()))?;
    print!("{}", super::inspect::render(&model));
    println!("\n== inference on generated pillar inputs (seed 0) ==");
    super::infer::run(super::infer::Args {
        model: model_path,
        inputs: vec![],
        random: Some(0),
        out: a.out.clone(),
        threads: a.threads,
        repeat: 3,
        json: false,
        profile: false,
    })?;
    println!("\ninputs and outputs written to {} (feed them to any runtime to compare)", a.out.display());
    Ok(())
}
