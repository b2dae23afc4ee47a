//! The verbs every sans-IO core shares, so one driver loop
//! ([`crate::runtime::driver`]) serves them all:
//!
//! - `handle_*(now, …)`: an input (a datagram, a signal, a reply, a timer);
//! - [`Core::poll_timeout`]: when to call [`Core::handle_timeout`] next;
//! - [`Core::poll_event`]: the next command for the outside world;
//! - `poll_transmit`: the next datagram to send, for the cores that send
//!   any (its shape differs: the SIP endpoint hands out owned messages, the
//!   call writes RTP into the driver's buffer), so it is not in the trait.
//!
//! A core never reads the clock, never touches a socket and never awaits:
//! `now` comes in with every input.

use std::time::Instant;

/// A sans-IO state machine driven by time and inputs.
pub trait Core {
    /// What the core asks of the outside world.
    type Event;
    /// Timers due at or before `now` fire.
    fn handle_timeout(&mut self, now: Instant);
    /// The earliest instant [`Core::handle_timeout`] has work to do.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next command, in the order the core produced them.
    fn poll_event(&mut self) -> Option<Self::Event>;
}

impl Core for crate::call::Call {
    type Event = crate::call::CallEvent;
    fn handle_timeout(&mut self, now: Instant) {
        crate::call::Call::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        crate::call::Call::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        crate::call::Call::poll_event(self)
    }
}

impl Core for crate::queue::QueueSet {
    type Event = crate::queue::QueueAction;
    fn handle_timeout(&mut self, now: Instant) {
        crate::queue::QueueSet::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        crate::queue::QueueSet::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        crate::queue::QueueSet::poll_event(self)
    }
}

impl Core for crate::queue::shared::QueueNode {
    type Event = crate::queue::QueueAction;
    fn handle_timeout(&mut self, now: Instant) {
        crate::queue::shared::QueueNode::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        crate::queue::shared::QueueNode::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        crate::queue::shared::QueueNode::poll_event(self)
    }
}

impl Core for crate::sip::Endpoint {
    type Event = crate::sip::SipEvent;
    fn handle_timeout(&mut self, now: Instant) {
        crate::sip::Endpoint::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        crate::sip::Endpoint::poll_timeout(self)
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        crate::sip::Endpoint::poll_event(self)
    }
}
