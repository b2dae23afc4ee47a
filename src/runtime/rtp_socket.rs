//! A call's RTP socket: registered with tokio's reactor for reading only.
//!
//! `tokio::net::UdpSocket` registers every socket for readability and
//! writability (edge-triggered). Our sends never wait on writability: the
//! media clock writes each frame with a plain non-blocking `sendto` (a full
//! send buffer drops the frame, which is what a late frame deserves). But
//! with write interest registered, the kernel reports the socket writable
//! again each time a sent datagram's buffer is freed, so every packet sent
//! woke the reactor: 50 wake-ups per second per call for nothing. Reading
//! through [`AsyncFd`] with [`Interest::READABLE`] alone leaves the reactor
//! only the packets that arrive.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A non-blocking UDP socket whose reads are readiness-driven and whose
/// sends are plain system calls, from any thread.
#[derive(Debug)]
pub struct RtpSocket {
    fd: AsyncFd<UdpSocket>,
}

impl RtpSocket {
    /// Wraps a bound socket (made non-blocking here). Needs a tokio runtime
    /// context (the reactor it registers with).
    pub fn new(socket: UdpSocket) -> io::Result<RtpSocket> {
        socket.set_nonblocking(true)?;
        // SAFETY: a `std::net::UdpSocket` owns its descriptor: it stays open
        // and `as_raw_fd` returns the same one until the socket is dropped,
        // which happens only with the `AsyncFd` that owns it.
        let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? };
        Ok(RtpSocket { fd })
    }

    /// Binds `addr` and wraps the socket.
    pub fn bind(addr: SocketAddr) -> io::Result<RtpSocket> {
        RtpSocket::new(UdpSocket::bind(addr)?)
    }

    /// Waits for the next datagram. Cancel-safe (nothing is read until the
    /// socket is ready, and a ready read completes synchronously).
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|s| s.get_ref().recv_from(buf)) {
                Ok(r) => return r,
                // Spurious readiness: cleared by try_io; wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// One non-blocking `sendto`; a full send buffer is `WouldBlock`.
    pub fn send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(buf, dest)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }
}
