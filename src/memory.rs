//! Handing freed memory back to the OS from a thread about to go idle.
//!
//! The binary's allocator (mimalloc) returns a thread's free pages only
//! when that thread next allocates. A thread that did one large piece of
//! work and then sits idle (a compile on rayon's pool, a refused
//! decompression bomb on a blocking thread) keeps everything it freed:
//! after compiling the Python and JavaScript examples that was ~200 MB.

/// Returns to the OS what the calling thread's heap freed (and pages
/// abandoned by threads that ended).
pub fn release_thread_memory() {
    // SAFETY: `mi_collect` only frees memory mimalloc holds and no longer
    // hands out; it is safe on any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
