use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::search::cache::ResultCache;

#[derive(clap::Args)]
pub struct Args {
    /// The cache to merge into (then rerun the command with --cache this directory).
    #[arg(long)]
    pub into: PathBuf,
    /// Shard caches (each a --cache directory of a `--shard i/n` run).
    #[arg(required = true)]
    pub caches: Vec<PathBuf>,
    /// Print one JSON object: per source cache, chunks copied and already present.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let dest = ResultCache::new(&a.into);
    std::fs::create_dir_all(&a.into).with_context(|| format!("cannot create {}", a.into.display()))?;
    for c in &a.caches {
        let (copied, same) = dest.merge_from(c).with_context(|| format!("merging {}", c.display()))?;
        println!("{}: {copied} chunk(s) copied, {same} already present", c.display());
    }
    println!(
        "merged into {}; rerun the sweep with --cache {} to get the combined results",
        a.into.display(),
        a.into.display()
    );
    Ok(())
}
