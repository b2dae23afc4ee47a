//! The one driver loop every core runs under (see `docs/runtime.md`).
//!
//! A [`Shell`] owns a sans-IO core ([`crate::core::Core`]) and the sockets
//! and channels that feed it. The loop is always the same: move out what
//! the core produced ([`Shell::flush`]: datagrams and commands), stop when
//! the core is done, otherwise wait for the next input or the core's next
//! deadline, whichever comes first, and hand it in with `now`.
//!
//! The only awaits are in [`Shell::next_input`] (socket reads, channel
//! receives) and the deadline sleep. Anything slower (DNS, the ledger, the
//! database) runs in a task of its own whose result comes back as an input,
//! so nothing a shell does can stall the loop (for a call: its audio).

use std::future::Future;
use std::time::Instant;

/// A core with its I/O. Implemented by the call task and the queue task.
pub trait Shell {
    /// One input: a datagram, a message from another task.
    type Input;

    /// Waits for the next input; `None` when the shell's inputs are closed.
    fn next_input(&mut self) -> impl Future<Output = Option<Self::Input>> + Send;

    /// Feeds one input to the core; `None`: the inputs are closed (the
    /// tasks that fed them are gone).
    fn handle_input(&mut self, now: Instant, input: Option<Self::Input>);

    /// The core's timers.
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&self) -> Option<Instant>;

    /// Sends what the core wants sent and executes its commands.
    fn flush(&mut self, now: Instant);

    /// Whether the loop is over.
    fn is_done(&self) -> bool;
}

/// Runs `shell` until it is done.
pub async fn drive<S: Shell>(shell: &mut S) {
    loop {
        shell.flush(Instant::now());
        if shell.is_done() {
            return;
        }
        let deadline = shell.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            input = shell.next_input() => shell.handle_input(Instant::now(), input),
            _ = sleep_until(deadline) => shell.handle_timeout(Instant::now()),
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending::<()>().await,
    }
}
