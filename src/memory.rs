//! Large buffers filled once: the problem's gathered parameters (hundreds of MB for a
//! big posterior).
//!
//! A fresh buffer's pages are made by the kernel at first touch, one fault a 4 KiB page:
//! for a 480 MB buffer ~120,000 faults, over half the time of reading a posterior into
//! it (benches/NOTES.md, "Loading straight into the problem's layout"). On Linux the
//! buffer is advised as transparent huge pages (`madvise(MADV_HUGEPAGE)`, the kernel's
//! "madvise" mode), one fault a 2 MiB page; the advice is a hint, and where the kernel
//! declines it nothing changes but the speed.

/// `len` zeros, in memory not yet touched (the allocator's fresh zero pages for large
/// sizes), advised as huge pages where the system allows it.
pub(crate) fn zeroed<T: Copy + Default>(len: usize) -> Vec<T> {
    let v = vec![T::default(); len];
    advise_huge_pages(&v);
    v
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let first = start.next_multiple_of(HUGE);
    let last = end / HUGE * HUGE;
    if last > first {
        // SAFETY: [first, last) lies inside `v`'s allocation, page aligned; the advice
        // changes how its pages are backed, never their contents or the mapping.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}
