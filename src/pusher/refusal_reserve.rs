//! The few extra connections the gateway keeps, over `max_connections`,
//! to tell a Pusher client it is over capacity in the client's own terms.
//!
//! Over `max_connections` every request on a new connection is answered
//! 503 at once. pusher-js cannot read that answer to a WebSocket upgrade
//! (the browser reports a failed socket and it retries at once, as for a
//! network error); only a close code 4100 makes it back off. So a Pusher
//! upgrade over capacity is accepted just far enough to send
//! `pusher:error` 4100 and close, and each such socket holds one of these
//! slots for at most a few seconds. With every slot taken it is answered
//! 503 like any other request: the reserve is a bound, never a second cap.
//! One connection holds at most one slot at a time: an HTTP/2 connection
//! may open hundreds of extended CONNECT streams at once, and would
//! otherwise take the whole reserve from everyone else.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many refusals may be in flight at once.
pub const REFUSAL_SLOTS: usize = 32;

/// The slots; one per refusal in flight.
pub struct RefusalReserve {
    slots: Arc<Semaphore>,
    /// The ids of the connections holding a slot.
    holders: Arc<Mutex<HashSet<u64>>>,
}

impl Default for RefusalReserve {
    fn default() -> RefusalReserve {
        RefusalReserve {
            slots: Arc::new(Semaphore::new(REFUSAL_SLOTS)),
            holders: Arc::default(),
        }
    }
}

/// One slot held by one connection; dropping it gives both back.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    conn: u64,
    holders: Arc<Mutex<HashSet<u64>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.holders.lock().remove(&self.conn);
    }
}

impl RefusalReserve {
    /// A slot for connection `conn`, given back when dropped; None when all
    /// are taken or `conn` already holds one.
    pub fn take(&self, conn: u64) -> Option<Slot> {
        let mut holders = self.holders.lock();
        if holders.contains(&conn) {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        holders.insert(conn);
        Some(Slot {
            _permit: permit,
            conn,
            holders: self.holders.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_bounded_and_slots_come_back() {
        let reserve = RefusalReserve::default();
        let held: Vec<_> = (0..REFUSAL_SLOTS as u64)
            .filter_map(|conn| reserve.take(conn))
            .collect();
        assert_eq!(held.len(), REFUSAL_SLOTS);
        assert!(reserve.take(1000).is_none(), "no slot past the reserve");
        drop(held);
        assert!(
            reserve.take(1000).is_some(),
            "a finished refusal frees its slot"
        );
    }

    #[test]
    fn one_connection_holds_one_slot_at_a_time() {
        let reserve = RefusalReserve::default();
        let first = reserve.take(7).expect("a slot");
        assert!(reserve.take(7).is_none(), "the same connection again");
        let other = reserve.take(8);
        assert!(other.is_some(), "another connection is not held back");
        drop(first);
        assert!(reserve.take(7).is_some(), "its refusal done, it may again");
    }
}
