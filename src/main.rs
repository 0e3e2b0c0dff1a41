// Freed tensors are reused instead of returned to the OS: every run allocates the same large
// activations, and fresh pages would cost a page fault (and zeroing) per 4 KiB each time.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (stable index in v2 and v3): -1 never purges freed memory.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // SAFETY: sets a process-wide allocator option before the work starts; no pointers involved.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    std::process::exit(pillarq::cli::main());
}
