//! Where a buffered body waits: in memory up to a bound per body, then in a
//! temporary file, with the memory of every spool of the gateway bounded
//! together (`limits.buffers.memory`; past it a spool goes to its file at
//! once), their files bounded together too (`limits.buffers.disk`; past
//! it [`Spool::fits`] says no and the caller waits or refuses), and both
//! counted for `/metrics`.
//!
//! The rule it keeps: no temporary file outlives its body. A file is made
//! with `tempfile::tempfile_in`, which unlinks it as it is made (`O_TMPFILE`
//! on Linux), so the kernel removes it when the last handle closes, however
//! the request ended: client gone, upstream gone, shutdown or a crash.
//!
//! File reads and writes are plain positioned calls on the serving thread,
//! as nginx makes them without its thread pool: they are page-cache copies
//! of at most [`CHUNK`] bytes, and a spool only writes what the memory
//! bound sent there. A spool shared behind a lock (an answer's, read by
//! the client while its task writes) makes them outside the lock: the
//! lock hands out a [`FileRead`] or [`FileWrite`] to run, and takes back
//! the result; `generation` tells a result that came back too late (the
//! spool was emptied or let go meanwhile) from one that counts.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Buf, Bytes, BytesMut};

use crate::config::BufferLimits;
use crate::metrics::stats::Stats;

/// The most a spool hands out at once.
pub(crate) const CHUNK: usize = 64 * 1024;

/// What all spools share: the gateway-wide memory bound, the counters it
/// is kept by, and where temporary files go.
#[derive(Clone)]
pub(crate) struct Budget {
    stats: Arc<Stats>,
    memory: usize,
    disk: usize,
    dir: Option<PathBuf>,
}

impl Budget {
    pub(crate) fn new(stats: &Arc<Stats>, limits: &BufferLimits) -> Budget {
        Budget {
            stats: stats.clone(),
            memory: limits.memory,
            disk: limits.disk,
            dir: limits.temp_dir.clone(),
        }
    }

    /// Take `n` bytes of the shared memory, when they are free.
    fn reserve(&self, n: usize) -> bool {
        let held = &self.stats.buffered_memory;
        let before = held.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.memory {
            held.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Shared memory not yet taken.
    fn memory_free(&self) -> usize {
        let held = self.stats.buffered_memory.load(Ordering::Relaxed);
        self.memory.saturating_sub(held)
    }

    /// Room left in the temporary files of all spools together.
    fn disk_free(&self) -> usize {
        let held = self.stats.buffered_disk.load(Ordering::Relaxed);
        self.disk.saturating_sub(held)
    }

    /// `n` bytes of the shared memory for a buffer that is not a spool,
    /// held until the guard drops; `None` when they are not free.
    pub(crate) fn hold(&self, n: usize) -> Option<Held> {
        self.reserve(n).then(|| Held {
            stats: self.stats.clone(),
            n,
        })
    }

    fn tempfile(&self) -> io::Result<File> {
        match &self.dir {
            Some(dir) => tempfile::tempfile_in(dir),
            None => tempfile::tempfile(),
        }
    }
}

/// Memory taken from the shared bound by [`Budget::hold`], given back when
/// dropped.
pub(crate) struct Held {
    stats: Arc<Stats>,
    n: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stats
            .buffered_memory
            .fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// A body's bytes in order: the first ones in memory, the rest (once the
/// memory bound is reached) in an unlinked temporary file.
///
/// Memory is taken in blocks of at most [`CHUNK`] bytes, each counted
/// whole against both bounds, and what is pushed is copied into them: a
/// pushed `Bytes` may be a small slice of a much larger read buffer, which
/// kept as it is would hold memory the bounds never see.
pub(crate) struct Spool {
    budget: Budget,
    /// This spool's memory bound.
    memory: usize,
    /// Filled blocks, in order.
    full: Vec<Bytes>,
    /// The block being filled, of `tail_size` bytes.
    tail: BytesMut,
    tail_size: usize,
    /// Memory taken from the budget: the blocks' sizes.
    reserved: usize,
    in_memory: usize,
    file: Option<Arc<File>>,
    on_disk: u64,
    /// A [`FileWrite`] is out: the spool is not emptied meanwhile.
    writing: bool,
    /// Counts the times the spool was emptied or let go.
    generation: u64,
}

/// A read of the temporary file to make outside the spool's lock.
pub(crate) struct FileRead {
    file: Arc<File>,
    off: u64,
    n: usize,
    generation: u64,
}

impl FileRead {
    pub(crate) fn run(&self) -> io::Result<Bytes> {
        let mut buf = vec![0; self.n];
        self.file.read_exact_at(&mut buf, self.off)?;
        Ok(Bytes::from(buf))
    }
}

/// A write to the temporary file to make outside the spool's lock, then
/// to hand back with [`Spool::written`].
pub(crate) struct FileWrite {
    file: Arc<File>,
    off: u64,
    data: Bytes,
    generation: u64,
}

impl FileWrite {
    pub(crate) fn run(&self) -> io::Result<()> {
        self.file.write_all_at(&self.data, self.off)
    }
}

/// What [`Spool::read_plan`] found at a place.
pub(crate) enum Planned {
    /// Bytes from memory, or none at or past the end.
    Ready(Bytes),
    /// Bytes to read from the file.
    File(FileRead),
}

impl Spool {
    pub(crate) fn new(budget: Budget, memory: usize) -> Spool {
        Spool {
            budget,
            memory,
            full: Vec::new(),
            tail: BytesMut::new(),
            tail_size: 0,
            reserved: 0,
            in_memory: 0,
            file: None,
            on_disk: 0,
            writing: false,
            generation: 0,
        }
    }

    /// A [`FileWrite`] is out.
    pub(crate) fn writing(&self) -> bool {
        self.writing
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> u64 {
        self.in_memory as u64 + self.on_disk
    }

    /// Bytes held in the temporary file.
    #[cfg(test)]
    pub(crate) fn on_disk(&self) -> u64 {
        self.on_disk
    }

    /// Whether `n` more bytes can be held within the bounds: in this
    /// spool's memory, or else in the room left under the shared disk
    /// bound. Callers ask before they push (an answer's reader waits, an
    /// upload is refused); the check and the push are not one step, so
    /// spools pushing at once may pass the disk bound by a read each.
    pub(crate) fn fits(&self, n: usize) -> bool {
        if self.on_disk == 0 {
            let in_tail = self.tail_size - self.tail.len();
            let more = self
                .memory
                .saturating_sub(self.reserved)
                .min(self.budget.memory_free());
            if in_tail.saturating_add(more) >= n {
                return true;
            }
        }
        self.budget.disk_free() >= n
    }

    /// Add `data` after what is held: to memory while nothing waits in the
    /// file and both bounds allow it, the rest to the file.
    pub(crate) fn push(&mut self, data: Bytes) -> io::Result<()> {
        match self.push_memory(data)? {
            None => Ok(()),
            Some(write) => {
                let done = write.run();
                self.written(write, done)
            }
        }
    }

    /// [`Spool::push`] up to the file: what goes there is handed back as
    /// a write to make (outside a lock), then to give to [`Spool::written`].
    /// One at a time.
    pub(crate) fn push_memory(&mut self, mut data: Bytes) -> io::Result<Option<FileWrite>> {
        while self.on_disk == 0 && !data.is_empty() {
            let room = self.tail_size - self.tail.len();
            if room == 0 {
                if !self.next_block() {
                    break;
                }
                continue;
            }
            let take = room.min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data.advance(take);
            self.in_memory += take;
        }
        if data.is_empty() {
            return Ok(None);
        }
        let file = match &self.file {
            Some(file) => file.clone(),
            None => self.file.insert(Arc::new(self.budget.tempfile()?)).clone(),
        };
        self.writing = true;
        Ok(Some(FileWrite {
            file,
            off: self.on_disk,
            data,
            generation: self.generation,
        }))
    }

    /// Take back a write from [`Spool::push_memory`] and how it went: its
    /// bytes count from now on, unless the spool was let go meanwhile.
    pub(crate) fn written(&mut self, write: FileWrite, done: io::Result<()>) -> io::Result<()> {
        self.writing = false;
        done?;
        if write.generation != self.generation {
            return Ok(());
        }
        let n = write.data.len();
        self.on_disk += n as u64;
        self.budget
            .stats
            .buffered_disk
            .fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Start a new block of memory, when this spool's bound and the shared
    /// one allow it.
    fn next_block(&mut self) -> bool {
        let size = CHUNK.min(self.memory.saturating_sub(self.reserved));
        if size == 0 || !self.budget.reserve(size) {
            return false;
        }
        self.reserved += size;
        let filled = std::mem::replace(&mut self.tail, BytesMut::with_capacity(size));
        if !filled.is_empty() {
            self.full.push(filled.freeze());
        }
        self.tail_size = size;
        true
    }

    /// Up to `max` bytes from `at` (fewer at a block's or the end's edge;
    /// none at or past the end).
    pub(crate) fn read_at(&self, at: u64, max: usize) -> io::Result<Bytes> {
        match self.read_plan(at, max) {
            Planned::Ready(data) => Ok(data),
            Planned::File(read) => read.run(),
        }
    }

    /// [`Spool::read_at`], with a read of the file handed back to make
    /// (outside a lock) instead of made.
    pub(crate) fn read_plan(&self, at: u64, max: usize) -> Planned {
        let mut start = 0u64;
        for block in &self.full {
            let end = start + block.len() as u64;
            if at < end {
                let from = (at - start) as usize;
                let to = block.len().min(from.saturating_add(max));
                return Planned::Ready(block.slice(from..to));
            }
            start = end;
        }
        if at < start + self.tail.len() as u64 {
            let from = (at - start) as usize;
            let to = self.tail.len().min(from.saturating_add(max));
            return Planned::Ready(Bytes::copy_from_slice(&self.tail[from..to]));
        }
        let off = at.saturating_sub(self.in_memory as u64);
        let Some(file) = self.file.as_ref().filter(|_| off < self.on_disk) else {
            return Planned::Ready(Bytes::new());
        };
        let n = usize::try_from(self.on_disk - off).map_or(max, |left| left.min(max));
        Planned::File(FileRead {
            file: file.clone(),
            off,
            n,
            generation: self.generation,
        })
    }

    /// Whether `read`, made from this spool, still counts.
    pub(crate) fn still(&self, read: &FileRead) -> bool {
        read.generation == self.generation
    }

    /// Let go of everything held (the file is kept, emptied, for what
    /// comes next).
    pub(crate) fn clear(&mut self) -> io::Result<()> {
        self.reset();
        if let Some(file) = &self.file {
            file.set_len(0)?;
        }
        Ok(())
    }

    /// Let go of everything held and of the file itself (its descriptor
    /// closes): for a spool that will not be read again.
    pub(crate) fn discard(&mut self) {
        self.reset();
        self.file = None;
    }

    /// Nothing held any more, counted back to the budget; reads planned
    /// before (an older generation) are stale.
    fn reset(&mut self) {
        self.release();
        self.full.clear();
        self.tail = BytesMut::new();
        self.tail_size = 0;
        self.reserved = 0;
        self.in_memory = 0;
        self.on_disk = 0;
        self.generation += 1;
    }

    fn release(&self) {
        let stats = &self.budget.stats;
        stats
            .buffered_memory
            .fetch_sub(self.reserved, Ordering::Relaxed);
        stats
            .buffered_disk
            .fetch_sub(self.on_disk as usize, Ordering::Relaxed);
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(memory: usize) -> (Arc<Stats>, Budget) {
        let stats = Arc::new(Stats::default());
        let limits = BufferLimits {
            memory,
            disk: 1 << 20,
            temp_dir: None,
        };
        (stats.clone(), Budget::new(&stats, &limits))
    }

    fn read_all(s: &Spool) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = s.read_at(out.len() as u64, 7).unwrap();
            if b.is_empty() {
                return out;
            }
            out.extend_from_slice(&b);
        }
    }

    #[test]
    fn memory_then_file_in_order_and_counted() {
        let (stats, budget) = budget(1 << 20);
        let mut s = Spool::new(budget, 10);
        s.push(Bytes::from_static(b"hello")).unwrap();
        s.push(Bytes::from_static(b"world")).unwrap();
        assert_eq!(s.on_disk(), 0);
        s.push(Bytes::from_static(b"!spilled")).unwrap();
        // Memory is full to its bound: the rest goes to the file, even what
        // would fit again, so that the order holds.
        s.push(Bytes::from_static(b"x")).unwrap();
        assert_eq!(s.on_disk(), 9);
        assert_eq!(read_all(&s), b"helloworld!spilledx");
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), 10);
        assert_eq!(stats.buffered_disk.load(Ordering::Relaxed), 9);
        s.clear().unwrap();
        assert_eq!(stats.buffered_disk.load(Ordering::Relaxed), 0);
        s.push(Bytes::from_static(b"again")).unwrap();
        assert_eq!(read_all(&s), b"again");
        assert_eq!(s.on_disk(), 0, "an emptied spool uses memory again");
        drop(s);
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), 0);
        assert_eq!(stats.buffered_disk.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn fits_says_no_past_the_shared_disk_bound() {
        // Disk bound of the test budget: 1 MiB.
        let (stats, budget) = budget(CHUNK);
        let mut a = Spool::new(budget.clone(), 16);
        let b = Spool::new(budget.clone(), 16);
        assert!(a.fits(16), "in its memory");
        a.push(Bytes::from(vec![0u8; 16 + (1 << 20) - 10])).unwrap();
        assert!(a.fits(10) && !a.fits(11), "10 bytes left on disk");
        assert!(b.fits(11), "b's own memory still takes it");
        assert!(!b.fits(17 + 10), "past b's memory, the disk is full");
        assert_eq!(stats.buffered_disk.load(Ordering::Relaxed), (1 << 20) - 10);
        a.discard();
        assert_eq!(stats.buffered_disk.load(Ordering::Relaxed), 0);
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), 0);
        assert!(a.fits(1 << 20), "all free again");
    }

    #[test]
    fn file_work_done_outside_a_lock_counts_only_if_the_spool_was_kept() {
        let (stats, budget) = budget(CHUNK);
        let mut s = Spool::new(budget, 4);
        let write = s.push_memory(Bytes::from_static(b"memfile")).unwrap();
        let write = write.expect("the rest goes to the file");
        assert!(s.writing(), "not to be emptied while the write is out");
        assert_eq!(s.len(), 4, "the file's part counts once written");
        let done = write.run();
        s.written(write, done).unwrap();
        assert_eq!((s.len(), s.writing()), (7, false));
        let Planned::File(read) = s.read_plan(4, 10) else {
            panic!("the file's part is read from the file");
        };
        assert_eq!(read.run().unwrap(), Bytes::from_static(b"ile"));
        assert!(s.still(&read));
        // Let go meanwhile: a late read or write does not count.
        let late = s.push_memory(Bytes::from_static(b"late")).unwrap().unwrap();
        s.discard();
        assert!(!s.still(&read));
        let done = late.run();
        s.written(late, done).unwrap();
        assert_eq!(s.len(), 0);
        drop(s);
        assert_eq!(stats.buffered_disk.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_held_reservation_counts_until_dropped() {
        let (stats, budget) = budget(100);
        let held = budget.hold(60).expect("free");
        assert!(budget.hold(41).is_none(), "past the shared bound");
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), 60);
        drop(held);
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_shared_bound_sends_a_spool_to_its_file() {
        // Room for one block in all.
        let (stats, budget) = budget(CHUNK);
        let mut a = Spool::new(budget.clone(), 1 << 20);
        let mut b = Spool::new(budget, 1 << 20);
        a.push(Bytes::from_static(b"12345678")).unwrap();
        b.push(Bytes::from_static(b"9")).unwrap();
        assert_eq!((a.on_disk(), b.on_disk()), (0, 1));
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), CHUNK);
        drop(a);
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), 0);
        assert_eq!(read_all(&b), b"9");
    }

    #[test]
    fn memory_is_counted_as_taken_and_a_slice_holds_no_larger_buffer() {
        let (stats, budget) = budget(1 << 20);
        let mut s = Spool::new(budget, 100 * 1024);
        let big = Bytes::from(vec![1u8; 70 * 1024]);
        // A small slice of a large buffer: copied, the buffer not kept.
        s.push(big.slice(..10)).unwrap();
        assert!(big.is_unique(), "the spool holds a copy, not the buffer");
        s.push(big.clone()).unwrap();
        s.push(big).unwrap();
        // A block of 64 KiB, then one of the 36 KiB left of the bound; the
        // rest to the file.
        assert_eq!(stats.buffered_memory.load(Ordering::Relaxed), 100 * 1024);
        assert_eq!(s.on_disk(), (140 * 1024 + 10 - 100 * 1024) as u64);
        let all = read_all(&s);
        assert_eq!(all.len(), 140 * 1024 + 10);
        assert!(all.iter().all(|&b| b == 1));
    }
}
