//! Native TensorRT, opened at run time: a binary built with the `tensorrt` feature needs no
//! TensorRT, CUDA or libclang to build, and runs (with a clear error) where TensorRT is absent.
//!
//! What a run-time loader can and cannot do without C++ bindings:
//! - TensorRT exports a few C-linkage symbols. `getInferLibVersion` and `getNvOnnxParserVersion`
//!   return a plain `int32_t`; [`probe`] calls them, so the version it reports is the loaded
//!   library's own.
//! - The builder is C++ only. `createInferBuilder_INTERNAL` is a C symbol, but it returns an
//!   `nvinfer1::IBuilder*` whose methods are inline header code calling a virtual table
//!   (`apiv::VBuilder`), and `INetworkDefinition`, `IBuilderConfig`, `ILayer` and the ONNX
//!   `IParser` are the same. Their layout is fixed only by the headers of one TensorRT release;
//!   calling them from Rust would mean hand-copying those tables, where a slip is undefined
//!   behaviour rather than an error. This module does not do that. [`build_engine`] therefore
//!   checks everything that can be checked (options, per-layer names against the ONNX nodes, both
//!   libraries and their versions) and then fails with the equivalent `trtexec` command
//!   ([`trtexec_args`]), which builds the same engine through the same builder API.

use std::collections::{BTreeMap, HashSet};
use std::ffi::c_int;
use std::path::{Path, PathBuf};

pub use super::trtexec::TrtVersion;
use crate::error::{Error, Result};
use crate::quant::plan::Precision;

/// The TensorRT runtime libraries tried, in order (TensorRT 10 first, then 11).
#[cfg(unix)]
const NVINFER: &[&str] = &["libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so"];
#[cfg(windows)]
const NVINFER: &[&str] = &["nvinfer_10.dll", "nvinfer_11.dll", "nvinfer.dll"];
#[cfg(unix)]
const NVONNXPARSER: &[&str] = &["libnvonnxparser.so.10", "libnvonnxparser.so.11", "libnvonnxparser.so"];
#[cfg(windows)]
const NVONNXPARSER: &[&str] = &["nvonnxparser_10.dll", "nvonnxparser_11.dll", "nvonnxparser.dll"];

/// One loaded library: its version and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibInfo {
    pub version: TrtVersion,
    /// The file the dynamic loader opened (its full path where the platform tells it).
    pub library: PathBuf,
}

/// What [`probe`] found: the TensorRT runtime, and the ONNX parser when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeInfo {
    pub version: TrtVersion,
    pub library: PathBuf,
    /// `Err` says why the ONNX parser library could not be used.
    pub onnx_parser: std::result::Result<LibInfo, String>,
}

/// Options of an engine build, as trtexec names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeOptions {
    /// Precisions come from the network's own types (Q/DQ, Cast); excludes the four below.
    pub strongly_typed: bool,
    pub fp16: bool,
    pub int8: bool,
    /// Per-layer precisions are constraints (`--precisionConstraints=obey`), not preferences.
    pub obey: bool,
    /// (ONNX node name, precision: int8, fp16 or fp32).
    pub layer_precisions: Vec<(String, String)>,
    /// Builder workspace limit, MiB (TensorRT's default: the device's memory).
    pub workspace_mib: Option<u64>,
}

/// One network layer and the precision asked of it (`None`: the builder chooses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRequest {
    pub name: String,
    pub precision: Option<Precision>,
}

/// What a finished build reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeReport {
    pub tensorrt: NativeInfo,
    pub engine: PathBuf,
    pub engine_bytes: u64,
    /// Every layer of the network, in order, with its requested precision.
    pub layers: Vec<LayerRequest>,
}

/// Opens the TensorRT runtime (and ONNX parser) at run time and asks them their versions.
/// `Err` is a plain sentence naming what is missing; nothing here panics.
pub fn probe() -> std::result::Result<NativeInfo, String> {
    let rt = load_versioned(NVINFER, b"getInferLibVersion\0")?;
    let onnx_parser = load_versioned(NVONNXPARSER, b"getNvOnnxParserVersion\0");
    Ok(NativeInfo { version: rt.version, library: rt.library, onnx_parser })
}

/// Builds `engine_out` from `onnx` with TensorRT's builder. Checks the options, matches
/// `layer_precisions` to the ONNX node names (which TensorRT's ONNX parser gives its layers), and
/// opens both TensorRT libraries; see the module docs for why it then stops with the equivalent
/// trtexec command instead of calling the C++ builder. It never writes a partial `engine_out`.
pub fn build_engine(onnx: &Path, engine_out: &Path, opts: &NativeOptions) -> Result<NativeReport> {
    let layers = requested_layers(onnx, opts)?;
    let dir = match engine_out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Other(format!("{}: the engine's folder does not exist", dir.display())));
    }
    let info = probe().map_err(Error::TensorRt)?;
    let parser = info.onnx_parser.clone().map_err(Error::TensorRt)?;
    if parser.version.major != info.version.major {
        return Err(Error::TensorRt(format!(
            "{} is TensorRT {} but {} is ONNX parser {}: install matching versions",
            info.library.display(),
            info.version,
            parser.library.display(),
            parser.version
        )));
    }
    let args = trtexec_args(onnx, engine_out, opts)?;
    Err(Error::TensorRt(format!(
        "TensorRT {} found ({}), {} layer precision(s) checked against {} ONNX nodes, but this build has \
         no C++ bindings for TensorRT's builder API, so it cannot build the engine itself; build it with: trtexec {}",
        info.version,
        info.library.display(),
        layers.iter().filter(|l| l.precision.is_some()).count(),
        layers.len(),
        args.join(" ")
    )))
}

/// Checks `opts` and returns every ONNX node (TensorRT's ONNX parser names each layer after its
/// node) with the precision `opts` asks of it.
pub fn requested_layers(onnx: &Path, opts: &NativeOptions) -> Result<Vec<LayerRequest>> {
    let requested = check_options(opts)?;
    let model = crate::onnx::load_model(onnx)?;
    let nodes = model.model.graph.as_ref().map(|g| g.node.as_slice()).unwrap_or_default();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone().unwrap_or_default()).collect();
    let known: HashSet<&str> = names.iter().map(String::as_str).collect();
    let unknown: Vec<&str> = requested.keys().map(String::as_str).filter(|n| !known.contains(n)).collect();
    if !unknown.is_empty() {
        let shown: Vec<String> = unknown.iter().take(5).map(|n| format!("'{n}'")).collect();
        let more = if unknown.len() > 5 { format!(" and {} more", unknown.len() - 5) } else { String::new() };
        return Err(Error::Model {
            file: onnx.to_path_buf(),
            msg: format!("no node named {}{more}: per-layer precisions name ONNX nodes", shown.join(", ")),
        });
    }
    Ok(names.into_iter().map(|name| LayerRequest { precision: requested.get(&name).copied(), name }).collect())
}

/// The trtexec arguments (without the program) that build the engine `build_engine` would.
pub fn trtexec_args(onnx: &Path, engine_out: &Path, opts: &NativeOptions) -> Result<Vec<String>> {
    let requested = check_options(opts)?;
    let mut args = vec![format!("--onnx={}", onnx.display()), format!("--saveEngine={}", engine_out.display())];
    if opts.strongly_typed {
        args.push("--stronglyTyped".into());
    }
    if opts.fp16 {
        args.push("--fp16".into());
    }
    if opts.int8 {
        args.push("--int8".into());
    }
    if !requested.is_empty() {
        if let Some(bad) = requested.keys().find(|n| n.contains([',', ':'])) {
            return Err(Error::Other(format!(
                "layer '{bad}': trtexec's --layerPrecisions cannot name a layer with ',' or ':'"
            )));
        }
        let spec: Vec<String> = requested.iter().map(|(n, p)| format!("{n}:{p}")).collect();
        args.push(format!("--layerPrecisions={}", spec.join(",")));
        args.push(format!("--precisionConstraints={}", if opts.obey { "obey" } else { "prefer" }));
    }
    if let Some(mib) = opts.workspace_mib {
        args.push(format!("--memPoolSize=workspace:{mib}M"));
    }
    Ok(args)
}

/// Validates the flag combination and parses the per-layer precisions (one per layer).
fn check_options(opts: &NativeOptions) -> Result<BTreeMap<String, Precision>> {
    if opts.strongly_typed && (opts.fp16 || opts.int8 || opts.obey || !opts.layer_precisions.is_empty()) {
        return Err(Error::Other(
            "a strongly typed network takes its precisions from its own types (Q/DQ, Cast): \
             fp16, int8, obey and per-layer precisions do not apply to it"
                .into(),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, p) in &opts.layer_precisions {
        let p: Precision = p.parse().map_err(|e: String| Error::graph(name, e))?;
        match p {
            Precision::Int8 if !opts.int8 => return Err(Error::graph(name, "asks for int8 but int8 is off")),
            Precision::Fp16 if !opts.fp16 => return Err(Error::graph(name, "asks for fp16 but fp16 is off")),
            _ => {}
        }
        if out.insert(name.clone(), p).is_some_and(|old| old != p) {
            return Err(Error::graph(name, "given two different precisions"));
        }
    }
    Ok(out)
}

/// Opens the first of `names` that the dynamic loader finds and calls its `int32_t f(void)` C
/// version symbol.
fn load_versioned(names: &[&str], symbol: &[u8]) -> std::result::Result<LibInfo, String> {
    let mut last = String::new();
    for name in names {
        // SAFETY: TensorRT's libraries run no initialisers that need more than being loaded.
        let lib = match unsafe { libloading::Library::new(name) } {
            Ok(lib) => lib,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        // SAFETY: `getInferLibVersion` and `getNvOnnxParserVersion` are `extern "C"
        // int32_t f() noexcept` in every TensorRT since 5 (NvInferRuntimeBase.h, NvOnnxParser.h).
        let f = unsafe { lib.get::<unsafe extern "C" fn() -> c_int>(symbol) }
            .map_err(|e| format!("{name} was found but has no {}: not a TensorRT library ({e})", sym_name(symbol)))?;
        // SAFETY: as above; the call takes no arguments and only reads constants.
        let v = unsafe { f() };
        let library = loaded_path(*f as *const ()).unwrap_or_else(|| PathBuf::from(name));
        let version =
            TrtVersion::from_code(u32::try_from(v).unwrap_or(0)).unwrap_or(TrtVersion { major: 0, minor: 0, patch: 0 });
        return Ok(LibInfo { version, library });
    }
    Err(format!(
        "{} not found (also tried {}): install TensorRT (its lib folder on the loader's path, e.g. \
         LD_LIBRARY_PATH) or build engines with trtexec; the loader said: {last}",
        names[0],
        names[1..].join(", ")
    ))
}

fn sym_name(symbol: &[u8]) -> &str {
    std::str::from_utf8(symbol.strip_suffix(b"\0").unwrap_or(symbol)).unwrap_or("?")
}

/// The file holding the code at `addr` (a symbol of a loaded library).
#[cfg(unix)]
fn loaded_path(addr: *const ()) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `dladdr` only reads the loader's tables and fills `info`; `dli_fname` points into
    // them and is copied out while the library is still loaded.
    if unsafe { libc::dladdr(addr.cast(), &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

#[cfg(not(unix))]
fn loaded_path(_addr: *const ()) -> Option<PathBuf> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_decode_both_encodings() {
        assert_eq!(TrtVersion::from_code(100_300).unwrap().to_string(), "10.3.0");
        assert_eq!(TrtVersion::from_code(110_400).unwrap().to_string(), "11.4.0");
        assert_eq!(TrtVersion::from_code(8601).unwrap().to_string(), "8.6.1");
    }

    #[test]
    fn probe_without_tensorrt_says_what_is_missing() {
        match probe() {
            Ok(info) => eprintln!("TensorRT {} at {} (skipping)", info.version, info.library.display()),
            Err(msg) => {
                eprintln!("probe: {msg}");
                assert!(msg.contains(NVINFER[0]) && msg.contains("not found"), "{msg}");
                assert!(msg.contains("install TensorRT") && msg.contains("trtexec"), "{msg}");
            }
        }
    }

    #[test]
    fn build_engine_without_tensorrt_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = dir.path().join("m.onnx");
        let model = crate::onnx::proto::ModelProto {
            ir_version: Some(8),
            graph: Some(crate::onnx::proto::GraphProto {
                node: vec![crate::onnx::proto::NodeProto {
                    name: Some("/head/Conv".into()),
                    op_type: Some("Relu".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        crate::onnx::save_model(&model, &onnx).unwrap();
        let engine = dir.path().join("m.engine");
        let opts = NativeOptions {
            fp16: true,
            int8: true,
            obey: true,
            layer_precisions: vec![("/head/Conv".into(), "fp16".into())],
            workspace_mib: Some(1024),
            ..Default::default()
        };
        let err = build_engine(&onnx, &engine, &opts).unwrap_err();
        eprintln!("build_engine: {err}");
        assert!(matches!(err, Error::TensorRt(_)), "{err}");
        assert!(!engine.exists());
        if probe().is_err() {
            assert!(err.to_string().contains("not found"), "{err}");
        }

        let bad = NativeOptions { layer_precisions: vec![("/nope".into(), "fp16".into())], fp16: true, ..opts.clone() };
        let err = build_engine(&onnx, &engine, &bad).unwrap_err();
        assert!(err.to_string().contains("no node named '/nope'"), "{err}");
        let typed = NativeOptions { strongly_typed: true, ..opts.clone() };
        assert!(build_engine(&onnx, &engine, &typed).unwrap_err().to_string().contains("strongly typed"));

        let args = trtexec_args(&onnx, &engine, &opts).unwrap();
        assert!(args.contains(&"--layerPrecisions=/head/Conv:fp16".to_string()), "{args:?}");
        assert!(args.contains(&"--precisionConstraints=obey".to_string()), "{args:?}");
        assert!(args.contains(&"--memPoolSize=workspace:1024M".to_string()), "{args:?}");
    }
}
