//! RTP port allocation from the configured range.
//!
//! Ports are handed out as guards that give the port back when dropped, so
//! every exit path of a call (normal end, reject, panic in its task)
//! releases it. Even ports only (RFC 3550 §11: RTP on even, RTCP on odd).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Pool {
    free: VecDeque<u16>,
}

/// A shared pool of RTP ports.
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<Mutex<Pool>>,
    total: usize,
}

/// An allocated port; returned to the pool on drop.
#[derive(Debug)]
pub struct PortGuard {
    port: u16,
    pool: Arc<Mutex<Pool>>,
}

impl PortGuard {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pool.lock() {
            // Least recently used first: a port just freed goes to the back,
            // so late packets of the old call rarely reach a new one.
            p.free.push_back(self.port);
        }
    }
}

impl PortPool {
    /// All even ports in `lo..=hi`.
    pub fn new(lo: u16, hi: u16) -> PortPool {
        let free: VecDeque<u16> = (lo..=hi).filter(|p| p % 2 == 0).collect();
        let total = free.len();
        PortPool {
            inner: Arc::new(Mutex::new(Pool { free })),
            total,
        }
    }

    pub fn allocate(&self) -> Option<PortGuard> {
        let port = self.inner.lock().ok()?.free.pop_front()?;
        Some(PortGuard {
            port,
            pool: self.inner.clone(),
        })
    }

    pub fn available(&self) -> usize {
        self.inner.lock().map(|p| p.free.len()).unwrap_or(0)
    }

    pub fn capacity(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_back_on_drop() {
        let pool = PortPool::new(20000, 20005);
        assert_eq!(pool.capacity(), 3);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        let c = pool.allocate().unwrap();
        assert_eq!((a.port(), b.port(), c.port()), (20000, 20002, 20004));
        assert!(pool.allocate().is_none());
        drop(b);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.allocate().unwrap().port(), 20002);
        drop((a, c));
        assert_eq!(pool.available(), 3);
    }
}
