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

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many refusals may be in flight at once.
pub const REFUSAL_SLOTS: usize = 32;

/// The slots; one per refusal in flight.
pub struct RefusalReserve {
    slots: Arc<Semaphore>,
}

impl Default for RefusalReserve {
    fn default() -> RefusalReserve {
        RefusalReserve {
            slots: Arc::new(Semaphore::new(REFUSAL_SLOTS)),
        }
    }
}

impl RefusalReserve {
    /// A slot, given back when dropped; None when all are taken.
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_bounded_and_slots_come_back() {
        let reserve = RefusalReserve::default();
        let held: Vec<_> = (0..REFUSAL_SLOTS).filter_map(|_| reserve.take()).collect();
        assert_eq!(held.len(), REFUSAL_SLOTS);
        assert!(reserve.take().is_none(), "no slot past the reserve");
        drop(held);
        assert!(
            reserve.take().is_some(),
            "a finished refusal frees its slot"
        );
    }
}
