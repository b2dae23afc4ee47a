//! Which available agent gets the next caller: the ring strategies of
//! Asterisk `app_queue` (`leastrecent`, `rrmemory`, `ringall`) and
//! FreeSWITCH `mod_callcenter` (`longest-idle-agent`, `round-robin`,
//! `ring-all`).

use std::time::Instant;

use super::Strategy;

/// Picks the agents to ring for one caller.
///
/// `members` are agent indices in configuration order; `candidate(i)` says
/// whether agent `i` may be rung for this caller now; `idle_since(i)` is
/// when it last became free (`None` = since start, which sorts first);
/// `rr_next` is the queue's round-robin memory (an index into `members`).
pub fn pick(
    strategy: Strategy,
    members: &[usize],
    rr_next: &mut usize,
    candidate: impl Fn(usize) -> bool,
    idle_since: impl Fn(usize) -> Option<Instant>,
    out: &mut Vec<usize>,
) {
    out.clear();
    match strategy {
        Strategy::RingAll => out.extend(members.iter().copied().filter(|&a| candidate(a))),
        Strategy::LongestIdle => {
            // Ties (e.g. several agents who logged in and never took a
            // call) go to the one listed first, so the choice is stable.
            let best = members
                .iter()
                .copied()
                .filter(|&a| candidate(a))
                .min_by_key(|&a| idle_since(a));
            out.extend(best);
        }
        Strategy::RoundRobin => {
            let n = members.len();
            if n == 0 {
                return;
            }
            let start = *rr_next % n;
            for k in 0..n {
                let slot = (start + k) % n;
                let a = members[slot];
                if candidate(a) {
                    *rr_next = (slot + 1) % n;
                    out.push(a);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn longest_idle_prefers_oldest_and_never_called() {
        let t0 = Instant::now();
        let idle = [Some(t0 + Duration::from_secs(5)), Some(t0), None];
        let mut out = Vec::new();
        let mut rr = 0;
        pick(
            Strategy::LongestIdle,
            &[0, 1, 2],
            &mut rr,
            |_| true,
            |a| idle[a],
            &mut out,
        );
        assert_eq!(out, vec![2]);
        pick(
            Strategy::LongestIdle,
            &[0, 1, 2],
            &mut rr,
            |a| a != 2,
            |a| idle[a],
            &mut out,
        );
        assert_eq!(out, vec![1]);
    }

    #[test]
    fn round_robin_rotates_and_skips_busy() {
        let mut out = Vec::new();
        let mut rr = 0;
        let mut seen = Vec::new();
        for _ in 0..4 {
            pick(
                Strategy::RoundRobin,
                &[7, 8, 9],
                &mut rr,
                |a| a != 8,
                |_| None,
                &mut out,
            );
            seen.extend(out.iter().copied());
        }
        assert_eq!(seen, vec![7, 9, 7, 9]);
    }

    #[test]
    fn ring_all_takes_every_candidate() {
        let mut out = Vec::new();
        let mut rr = 0;
        pick(
            Strategy::RingAll,
            &[1, 2, 3],
            &mut rr,
            |a| a != 2,
            |_| None,
            &mut out,
        );
        assert_eq!(out, vec![1, 3]);
    }
}
