//! Arguments and set-up shared by the quantization commands (calibrate, sensitivity, search,
//! calib-sweep, eval/infer --plan).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::model_config::ConfigArgs;
use crate::kitti::KittiDir;
use crate::model::Model;
use crate::onnx::metadata::network_sha256;
use crate::pointpillars::detect::Detector;
use crate::quant::calib::CalibMethod;
use crate::quant::calibrate::{weight_scales, CalibrationFile, LayerHistograms, Observers};
use crate::quant::plan::{Calibration, PrecisionPlan};
use crate::quant::recipe::Recipe;
use crate::search::cache::ResultCache;
use crate::search::evaluate::Evaluator;
use crate::search::sweep::{draw, histograms_of, refine_calibration};
use crate::search::{EvalSet, Shard};

/// Where INT8 activation thresholds come from.
#[derive(clap::Args, Clone)]
pub struct CalibArgs {
    /// Calibration file written by `pillarq calibrate`.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Without --calib: calibrate now with this method (max, percentile[:P], entropy, mse) ...
    #[arg(long, default_value = "max")]
    pub method: CalibMethod,
    /// ... on the first N frames (or N seeded random frames with --calib-seed) ...
    #[arg(long, default_value_t = 16)]
    pub calib_frames: usize,
    #[arg(long)]
    pub calib_seed: Option<u64>,
    /// ... of this split of --data.
    #[arg(long, default_value = "train")]
    pub calib_split: String,
    /// Round every scale (activations and per-channel weights) up to a power of two.
    #[arg(long)]
    pub pow2_scales: bool,
    /// Use a --calib file computed on another network (its model_hash differs) anyway.
    #[arg(long)]
    pub allow_other_model: bool,
    /// PTQ recipe when calibrating now (default: sparse,equalize,rounding): none, all, or a comma list of steps
    /// (sparse: the positions no point reaches leave the histograms; sparse-zeros: every exact
    /// zero too; equalize: the pillar net's input equalized per feature; thresholds: task-guided
    /// threshold search; rounding: GPTQ weight rounding; bias: bias correction). See `pillarq
    /// calibrate --help`. With --calib: the file must have been made with it.
    #[arg(long)]
    pub recipe: Option<Recipe>,
}

/// A loaded model ready to detect, with the hash of its network (the file without pillarq's
/// configuration metadata: `annotate` does not change it).
pub struct Loaded {
    pub model: Model,
    pub detector: Detector,
    pub hash: String,
}

pub fn load(path: &Path, config: &ConfigArgs, threads: usize) -> Result<Loaded> {
    let model = Model::load(path).with_context(|| format!("cannot load {}", path.display()))?;
    let detector = config.detector(&model, threads)?;
    let hash = network_sha256(path, crate::pointpillars::METADATA_KEY)?;
    Ok(Loaded { model, detector, hash })
}

/// The calibration frames: the first `n` of the split, or `n` drawn with `seed`.
pub fn calibration_ids(data: &KittiDir, split: &str, n: usize, seed: Option<u64>) -> Result<Vec<String>> {
    let all = data.split_ids(split)?;
    if all.is_empty() {
        bail!("split '{split}' lists no frames");
    }
    Ok(match seed {
        Some(s) => draw(all.len(), n, s).into_iter().map(|i| all[i].clone()).collect(),
        None => all.into_iter().take(n).collect(),
    })
}

/// Runs the observers on `ids` and builds the calibration file for `method` (power-of-two scales
/// with `pow2`), refined by the recipe's refinement steps.
#[allow(clippy::too_many_arguments)]
pub fn calibrate(
    l: &Loaded,
    data: &KittiDir,
    split: &str,
    ids: &[String],
    method: &CalibMethod,
    seed: Option<u64>,
    recipe: Recipe,
    pow2: bool,
    quiet: bool,
) -> Result<CalibrationFile> {
    let exec = l.detector.executor();
    let obs = Observers::new(exec, &l.model.layers)?.with_cache_tensors(&l.model.graph, &l.model.layers).with_recipe(
        exec,
        recipe,
        &l.detector.empty_scene_inputs()?,
    )?;
    let pb = super::progress::bar(ids.len(), "observe", quiet);
    let h = histograms_of(&l.detector, &obs, data, ids, &mut || pb.inc(1))?;
    pb.finish_and_clear();
    let mut f = file_from(l, data, split, ids, &h, method, seed)?;
    if pow2 {
        f = f.with_pow2_scales();
    }
    refine_file(l, data, ids, &obs, &h, method, recipe, f, quiet)
}

/// `f` with the recipe's refinement steps applied to its calibration (`quant::refine`), run on
/// the same frames; unchanged when the recipe has none.
#[allow(clippy::too_many_arguments)]
pub fn refine_file(
    l: &Loaded,
    data: &KittiDir,
    ids: &[String],
    obs: &Observers,
    h: &LayerHistograms,
    method: &CalibMethod,
    recipe: Recipe,
    mut f: CalibrationFile,
    quiet: bool,
) -> Result<CalibrationFile> {
    if !recipe.refines() {
        return Ok(f);
    }
    let (calibration, report) = refine_calibration(
        &l.detector,
        &l.model.layers,
        obs,
        h,
        data,
        ids,
        method,
        recipe,
        f.calibration,
        super::progress::bars(quiet),
    )?;
    f.calibration = calibration;
    f.refinement = Some(report);
    Ok(f)
}

pub fn file_from(
    l: &Loaded,
    data: &KittiDir,
    split: &str,
    ids: &[String],
    h: &crate::quant::calibrate::LayerHistograms,
    method: &CalibMethod,
    seed: Option<u64>,
) -> crate::Result<CalibrationFile> {
    let calibration = h.calibration(method, seed, &l.hash);
    let (tensors, _) = crate::quant::calibrate::cache_entries(&l.model.graph, &l.model.layers, &calibration, &|_| true);
    Ok(CalibrationFile {
        model: l.model.file.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        data: data.root().display().to_string(),
        split: split.to_string(),
        frame_ids: ids.to_vec(),
        calibration,
        weights: weight_scales(l.detector.executor(), &l.model.layers)?,
        tensors: tensors.into_iter().collect(),
        refinement: None,
        qat: None,
    })
}

impl CalibArgs {
    /// The calibration to use: the --calib file (checked against the model), or a fresh one.
    pub fn resolve(&self, l: &Loaded, data_dir: &Path) -> Result<Calibration> {
        if let Some(p) = &self.calib {
            let f = CalibrationFile::read(p)?;
            let made_with = if f.calibration.recipe.is_empty() { "none" } else { f.calibration.recipe.as_str() };
            if let Some(r) = self.recipe.filter(|r| made_with != r.to_string()) {
                bail!(
                    "--recipe {r} applies when calibrating now; {} was made with recipe {made_with}: drop --calib or \
                     --recipe",
                    p.display()
                );
            }
            if !self.allow_other_model {
                check_model_hash(&f.calibration, &l.hash, p)?;
            }
            if self.pow2_scales && !f.calibration.pow2_scales && f.calibration.has_scale_fitted_refinements() {
                bail!(
                    "{} has rounded weights or corrected biases fitted to its exact scales; --pow2-scales would \
                     change those scales: calibrate with --pow2-scales instead",
                    p.display()
                );
            }
            return Ok(self.rounded(f.calibration));
        }
        let data = KittiDir::open(data_dir)?;
        let ids = calibration_ids(&data, &self.calib_split, self.calib_frames, self.calib_seed)?;
        let f = calibrate(
            l,
            &data,
            &self.calib_split,
            &ids,
            &self.method,
            self.calib_seed,
            self.recipe.unwrap_or_else(Recipe::default_recipe),
            self.pow2_scales,
            true,
        )?;
        Ok(f.calibration)
    }

    fn rounded(&self, c: Calibration) -> Calibration {
        if self.pow2_scales {
            c.with_pow2_scales()
        } else {
            c
        }
    }
}

/// Result cache, chunking and sharding of the sweeps.
#[derive(clap::Args, Clone)]
pub struct SweepArgs {
    /// Result cache: finished work is kept here, so a rerun resumes.
    #[arg(long, default_value = "out/cache")]
    pub cache: PathBuf,
    /// Frames per cached chunk (part of the cache key).
    #[arg(long, default_value_t = 25)]
    pub chunk: usize,
    /// Do the share i of n (chunks i, i+n, ...); merge shard caches with `pillarq merge`.
    #[arg(long, default_value = "0/1")]
    pub shard: Shard,
    /// With --shard on a shared cache: wait up to this many seconds for the other shards'
    /// chunks when a step needs them (0: stop and say what is missing).
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
}

impl SweepArgs {
    pub fn evaluator<'a>(
        &self,
        l: &'a Loaded,
        set: &'a EvalSet,
        cache: &'a ResultCache,
        quiet: bool,
    ) -> Result<Evaluator<'a>> {
        if self.chunk == 0 {
            bail!("--chunk must be at least 1");
        }
        Ok(Evaluator {
            detector: &l.detector,
            layers: &l.model.layers,
            set,
            cache,
            model_hash: &l.hash,
            chunk: self.chunk,
            shard: self.shard,
            progress: super::progress::bars(quiet),
            cost: Default::default(),
        })
    }

    /// Repeats `f` until it returns a result or the wait runs out (shards on a shared cache).
    pub fn until_complete<T>(&self, mut f: impl FnMut() -> crate::Result<Option<T>>) -> Result<Option<T>> {
        let start = std::time::Instant::now();
        loop {
            if let Some(r) = f()? {
                return Ok(Some(r));
            }
            if start.elapsed().as_secs() >= self.wait {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
    }
}

/// Reads a plan and fills its calibration from `calib` when it has none.
pub fn read_plan(path: &Path, calib: Option<&Path>) -> Result<PrecisionPlan> {
    let mut plan = PrecisionPlan::read(path)?;
    if let Some(c) = calib {
        plan.calibration = Some(CalibrationFile::read(c)?.calibration);
    }
    Ok(plan)
}

/// Scales computed on another network are refused: the file that holds them is named.
pub fn check_model_hash(c: &Calibration, network_hash: &str, file: &Path) -> crate::Result<()> {
    if c.model_hash.is_empty() || c.model_hash == network_hash {
        return Ok(());
    }
    Err(crate::Error::Plan {
        file: file.to_path_buf(),
        msg: format!(
            "the scales were computed on another network (model_hash {}..., this model's {}...); \
             recalibrate with `pillarq calibrate`, or pass --allow-other-model to use them anyway \
             (pillarq annotate does not change a model's hash)",
            &c.model_hash[..c.model_hash.len().min(12)],
            &network_hash[..network_hash.len().min(12)]
        ),
    })
}

/// Reads, checks and compiles a plan for an executor; errors name the plan file (or the
/// calibration file its scales come from).
pub fn compile_plan(
    exec: &crate::exec::cpu::CpuExecutor,
    model: &Model,
    path: &Path,
    calib: Option<&Path>,
) -> Result<crate::exec::cpu::CompiledPlan> {
    let plan = read_plan(path, calib)?;
    if let Some(c) = &plan.calibration {
        check_model_hash(
            c,
            &network_sha256(&model.file.path, crate::pointpillars::METADATA_KEY)?,
            calib.unwrap_or(path),
        )?;
    }
    let resolved = plan.resolve(&model.layers).map_err(|msg| crate::Error::Plan { file: path.to_path_buf(), msg })?;
    Ok(exec.compile_plan(&resolved)?)
}

/// Writes JSON (pretty) atomically, creating the parent directory.
pub fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let bytes = serde_json::to_vec_pretty(v)?;
    crate::files::write_atomic(path, &bytes)?;
    Ok(())
}

/// The message for a sharded run that stopped before the whole result existed.
pub fn incomplete(what: &str, a: &SweepArgs) -> anyhow::Error {
    anyhow::anyhow!(
        "shard {}/{} finished its share of the {what}; the rest belongs to other shards. Run them, then \
         `pillarq merge --into {} <their caches>` and rerun this command (or use a shared --cache with --wait)",
        a.shard.index,
        a.shard.count,
        a.cache.display()
    )
}
