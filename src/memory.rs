//! How the process's heap gives memory back to the OS: in small pages
//! (no transparent huge pages), and from a thread about to go idle.
//!
//! The binary's allocator (mimalloc) returns a thread's free pages only
//! when that thread next allocates. A thread that did one large piece of
//! work and then sits idle (a compile on rayon's pool, a refused
//! decompression bomb on a blocking thread) keeps everything it freed:
//! after compiling the Python and JavaScript examples that was ~200 MB.

/// Keeps the heap in 4 KiB pages: turns transparent huge pages off for
/// this process, unless the operator set `MIMALLOC_ALLOW_THP` themselves.
///
/// mimalloc asks for huge pages on its 1 GiB arena (`MADV_HUGEPAGE`), so
/// under Debian's default THP mode (`madvise`) every 2 MiB of the arena a
/// thread touches became resident whole, and giving back a free 64 KiB
/// range kept the rest of its huge page. Interleaved in the load bench,
/// peak RSS went 0.75x (three plugins: 308, 310 -> 239, 235 MiB) and the
/// freshly started router's 0.55x (104 -> 57 MiB), with delivered/s
/// unchanged within the machine's noise (1.05x, 0.93x). Call first thing
/// in `main`: the flag also covers mappings made before it (pages already
/// faulted in stay as they are).
pub fn keep_heap_in_small_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes no memory.
    // It fails only on kernels older than 3.15, which run the router as
    // before, with the larger footprint; logging is not set up yet to say so.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Returns to the OS what the calling thread's heap freed (and pages
/// abandoned by threads that ended).
pub fn release_thread_memory() {
    // SAFETY: `mi_collect` only frees memory mimalloc holds and no longer
    // hands out; it is safe on any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
