//! What the caller leg may send, and where (no RTP amplification), and the
//! short no-ACK window.
//!
//! A 200 OK is not proof that the INVITE's source wants our media: an
//! attacker can send one INVITE naming a victim's address in its SDP and
//! never ACK. So:
//! - **Before the ACK** nothing is sent unless the caller has already sent
//!   RTP from the very address its SDP names (symmetric latching: the far
//!   end is there and talking), and then at most [`UNCONFIRMED_PACKETS`]
//!   packets / [`UNCONFIRMED_BYTES`] bytes.
//! - **At any time** RTP goes only to the IP the INVITE came from or to a
//!   configured trusted network (`[rtp] trusted_media_networks`); a frame
//!   for any other address is dropped (and logged once).
//! - **No ACK and no RTP** from the caller within `no_ack_timeout` (default
//!   8 s) ends the call with `no_ack`; the SIP layer's 64·T1 stays the
//!   outer bound for callers that do send media.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use super::CallNet;
use crate::sip::admission::Cidr;

/// Most packets one unconfirmed call may send (one second of audio).
pub const UNCONFIRMED_PACKETS: u32 = 50;
/// Most bytes one unconfirmed call may send.
pub const UNCONFIRMED_BYTES: u64 = 10_000;

/// The caller leg's send policy.
#[derive(Debug, Clone)]
pub struct MediaGuard {
    signal_ip: Option<IpAddr>,
    trusted: Arc<[Cidr]>,
    confirmed: bool,
    /// The caller sent RTP from the address its SDP names.
    latched_on_sdp: bool,
    /// Any RTP arrived from the caller.
    heard: bool,
    unconfirmed_packets: u32,
    unconfirmed_bytes: u64,
    no_ack_deadline: Option<Instant>,
    warned: bool,
}

impl MediaGuard {
    pub fn new(net: &CallNet, now: Instant) -> MediaGuard {
        MediaGuard {
            signal_ip: net.signal_ip,
            trusted: net.trusted.clone(),
            confirmed: false,
            latched_on_sdp: false,
            heard: false,
            unconfirmed_packets: 0,
            unconfirmed_bytes: 0,
            no_ack_deadline: now.checked_add(net.no_ack_timeout),
            warned: false,
        }
    }

    /// The ACK arrived.
    pub fn confirmed(&mut self) {
        self.confirmed = true;
    }

    /// A new SDP (re-INVITE): the latch must be proven again.
    pub fn sdp_changed(&mut self) {
        self.latched_on_sdp = false;
    }

    /// A datagram came in on the caller's socket; `heard`: the media
    /// session has accepted RTP from the caller, and is latched to
    /// `latched`; `sdp` is the address the caller's SDP names.
    pub fn caller_rtp(
        &mut self,
        heard: bool,
        latched: Option<SocketAddr>,
        sdp: Option<SocketAddr>,
    ) {
        self.heard |= heard;
        if heard && latched.is_some() && latched == sdp {
            self.latched_on_sdp = true;
        }
    }

    /// When the no-ACK window closes (`None` once RTP was heard).
    pub fn no_ack_deadline(&self) -> Option<Instant> {
        if self.heard || self.confirmed {
            None
        } else {
            self.no_ack_deadline
        }
    }

    pub fn no_ack_expired(&self, now: Instant) -> bool {
        self.no_ack_deadline().is_some_and(|d| now >= d)
    }

    /// Whether `dest` may receive this frame of `len` bytes; counts it
    /// against the unconfirmed cap when it is sent before the ACK.
    pub fn may_send(&mut self, dest: SocketAddr, len: usize, call_id: &str) -> bool {
        if !self.allowed_dest(dest.ip()) {
            if !self.warned {
                self.warned = true;
                tracing::warn!(%call_id, dest = %dest, "RTP destination is neither the signalling source nor a trusted network: media withheld");
            }
            return false;
        }
        if self.confirmed {
            return true;
        }
        if !self.latched_on_sdp
            || self.unconfirmed_packets >= UNCONFIRMED_PACKETS
            || self.unconfirmed_bytes + len as u64 > UNCONFIRMED_BYTES
        {
            return false;
        }
        self.unconfirmed_packets += 1;
        self.unconfirmed_bytes += len as u64;
        true
    }

    fn allowed_dest(&self, ip: IpAddr) -> bool {
        let Some(signal) = self.signal_ip else {
            return true;
        };
        canonical(ip) == canonical(signal) || self.trusted.iter().any(|c| c.contains(ip))
    }
}

/// An IPv4 address seen v4-mapped on a dual-stack socket is that IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
