//! Sizes that come from files: element counts and byte sizes computed with checked arithmetic,
//! and the memory budget a single tensor must fit in. Dims in a model, a .npy header or a
//! configuration are untrusted; a product that overflows, or a tensor larger than the budget,
//! is an error the caller attaches a file or node to, never a wrapped count or an aborted
//! allocation.

use std::sync::atomic::{AtomicU64, Ordering};

/// The budget when neither `--max-memory` nor /proc/meminfo gives one.
const FALLBACK_BUDGET: u64 = 16 << 30;

/// Bytes set by `set_max_memory` (0: not set).
static MAX_MEMORY: AtomicU64 = AtomicU64::new(0);

/// Sets the largest tensor, in bytes, that any stage may allocate (`--max-memory`,
/// `PILLARQ_MAX_MEMORY`). 0 restores the default.
pub fn set_max_memory(bytes: u64) {
    MAX_MEMORY.store(bytes, Ordering::Relaxed);
}

/// The memory budget in bytes: what `set_max_memory` set, else the machine's physical memory
/// (MemTotal of /proc/meminfo), else 16 GiB.
pub fn max_memory() -> u64 {
    match MAX_MEMORY.load(Ordering::Relaxed) {
        0 => physical_memory().unwrap_or(FALLBACK_BUDGET),
        b => b,
    }
}

/// MemTotal, read once per process: every tensor allocation checks the budget, and reading
/// /proc/meminfo costs tens of microseconds each time.
fn physical_memory() -> Option<u64> {
    static TOTAL: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(read_mem_total)
}

fn read_mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses a memory size: bytes, or a number with a K/M/G/T suffix (powers of 1024; `GB`, `GiB`
/// and lower case accepted), e.g. `8G`, `512MiB`, `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("'{s}' is not a memory size (bytes, or a number with K, M, G or T)")),
    };
    let v: f64 =
        num.parse().map_err(|_| format!("'{s}' is not a memory size (bytes, or a number with K, M, G or T)"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("memory size '{s}' is out of range"));
    }
    Ok(bytes as u64)
}

/// A byte count for messages: `1.28 TB (1280000000000 bytes)`.
pub fn human_bytes(b: u128) -> String {
    let units = [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")];
    match units.iter().find(|(u, _)| b as f64 >= *u) {
        Some((u, name)) => format!("{:.2} {name} ({b} bytes)", b as f64 / u),
        None => format!("{b} bytes"),
    }
}

/// The number of elements of `shape`, or `None` when it overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// The exact size of a tensor of `shape` with `width`-byte elements, for messages (`u128` holds
/// any product of a few 64-bit dims; saturates beyond).
fn exact_bytes(shape: &[usize], width: usize) -> u128 {
    shape.iter().fold(width as u128, |n, &d| n.saturating_mul(d as u128))
}

/// The element count of a tensor of `shape` with `width`-byte elements that is about to be
/// allocated, checked: the count and byte size must not overflow and the bytes must fit in the
/// memory budget. The message says the shape, the size and the budget; callers add the node or
/// file.
pub fn alloc_elements(shape: &[usize], width: usize) -> Result<usize, String> {
    let n = checked_numel(shape).filter(|n| n.checked_mul(width).is_some());
    let bytes = exact_bytes(shape, width);
    let budget = max_memory();
    match n {
        Some(n) if bytes <= budget as u128 => Ok(n),
        _ => Err(format!(
            "a tensor of shape {shape:?} needs {}, more than the memory budget of {} (raise it with --max-memory or PILLARQ_MAX_MEMORY)",
            human_bytes(bytes),
            human_bytes(budget as u128)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_that_wrap_are_refused() {
        assert_eq!(checked_numel(&[1 << 62, 4]), None);
        assert_eq!(checked_numel(&[3, 0, 1 << 62, 4]), Some(0));
        assert_eq!(checked_numel(&[]), Some(1));
        assert_eq!(checked_numel(&[2, 3, 4]), Some(24));
        let e = alloc_elements(&[1 << 62, 4], 4).unwrap_err();
        assert!(e.contains("[4611686018427387904, 4]") && e.contains("73786976294838206464 bytes"), "{e}");
    }

    #[test]
    fn budget_is_checked_in_bytes() {
        // 2^40 x 32 f32 = 128 TiB: over any machine's memory.
        let e = alloc_elements(&[1 << 40, 32], 4).unwrap_err();
        assert!(e.contains("140.74 TB") && e.contains("memory budget"), "{e}");
        assert_eq!(alloc_elements(&[1000, 1000], 4), Ok(1_000_000));
        assert_eq!(alloc_elements(&[0, 1 << 62], 8), Ok(0));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("99999999T").is_err());
    }
}
