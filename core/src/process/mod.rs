//! Running the client tools as children without blocking the caller.

pub mod capabilities;
pub mod child;
pub mod command;
pub mod stall;
pub mod step;
pub mod stream;
pub mod version;

/// Hands memory that was freed back to the system. An upload holds several parts of up to
/// `part_size` bytes; once it is over, glibc keeps much of that in its arenas, and a worker that
/// has run uploads would otherwise stay tens of MB larger than one that has not.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; any pad value is valid.
    unsafe {
        libc::malloc_trim(0);
    }
}
