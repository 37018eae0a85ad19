//! The dashboard's sign-in: one-time tickets (the URL `capwise dashboard`
//! prints) and the sessions they open. Kept in memory only, so a restart
//! of the agent signs every browser out. The clock is passed in, so the
//! rules are tested without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a sign-in URL can be used: it may be seen in a process list
/// (`xdg-open URL`), so it is short and single-use.
pub const TICKET_LIFETIME: Duration = Duration::from_secs(60);
/// How long a browser stays signed in: cookies are not isolated by port,
/// so another local web server could read it; hours, not weeks.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Outstanding tickets and open sessions kept; the oldest goes first.
const MAX_TICKETS: usize = 16;
const MAX_SESSIONS: usize = 64;

/// Tickets and sessions, each a random secret with its expiry.
#[derive(Default)]
pub struct SignIn {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tickets: HashMap<String, Instant>,
    sessions: HashMap<String, Instant>,
}

/// 32 random bytes in hex.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Keeps at most `max` entries after inserting one: drops the expired,
/// then the ones closest to expiry.
fn insert_bounded(
    map: &mut HashMap<String, Instant>,
    key: String,
    expiry: Instant,
    now: Instant,
    max: usize,
) {
    map.retain(|_, e| *e > now);
    while map.len() >= max {
        let Some(oldest) = map.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) else {
            break;
        };
        map.remove(&oldest);
    }
    map.insert(key, expiry);
}

/// A new session in `inner`, valid for [`SESSION_LIFETIME`] from `now`.
fn open_in(inner: &mut Inner, now: Instant) -> String {
    let session = new_secret();
    insert_bounded(
        &mut inner.sessions,
        session.clone(),
        now + SESSION_LIFETIME,
        now,
        MAX_SESSIONS,
    );
    session
}

impl SignIn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new one-time ticket, valid for [`TICKET_LIFETIME`] from `now`.
    pub fn issue_ticket(&self, now: Instant) -> String {
        let ticket = new_secret();
        let mut inner = self.lock();
        insert_bounded(
            &mut inner.tickets,
            ticket.clone(),
            now + TICKET_LIFETIME,
            now,
            MAX_TICKETS,
        );
        ticket
    }

    /// Uses a ticket up (whether or not it is still valid) and, if it was,
    /// opens a session: its secret.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Option<String> {
        let mut inner = self.lock();
        let expiry = inner.tickets.remove(ticket)?;
        if expiry <= now {
            return None;
        }
        Some(open_in(&mut inner, now))
    }

    /// Opens a session without a ticket (the password sign-in checked the
    /// caller): its secret.
    pub fn open_session(&self, now: Instant) -> String {
        open_in(&mut self.lock(), now)
    }

    /// Whether `session` is open at `now`.
    pub fn is_open(&self, session: &str, now: Instant) -> bool {
        self.lock().sessions.get(session).is_some_and(|e| *e > now)
    }

    /// Closes one session.
    pub fn close(&self, session: &str) {
        self.lock().sessions.remove(session);
    }

    /// Closes every session and forgets every ticket: how many sessions
    /// were open.
    pub fn revoke_all(&self, now: Instant) -> usize {
        let mut inner = self.lock();
        let open = inner.sessions.values().filter(|e| **e > now).count();
        inner.sessions.clear();
        inner.tickets.clear();
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_one_session_once() {
        let s = SignIn::default();
        let now = Instant::now();
        let t = s.issue_ticket(now);
        let session = s
            .redeem(&t, now + Duration::from_secs(1))
            .expect("valid ticket");
        assert!(s.is_open(&session, now + Duration::from_secs(2)));
        assert_eq!(
            s.redeem(&t, now + Duration::from_secs(2)),
            None,
            "second use"
        );
        assert!(!s.is_open("nonsense", now));
    }

    #[test]
    fn tickets_expire_within_a_minute_and_sessions_within_hours() {
        let s = SignIn::default();
        let now = Instant::now();
        let t = s.issue_ticket(now);
        assert_eq!(s.redeem(&t, now + TICKET_LIFETIME), None);
        let t = s.issue_ticket(now);
        let session = s.redeem(&t, now).unwrap();
        assert!(s.is_open(&session, now + SESSION_LIFETIME - Duration::from_secs(1)));
        assert!(!s.is_open(&session, now + SESSION_LIFETIME));
    }

    #[test]
    fn revoking_closes_sessions_and_voids_tickets() {
        let s = SignIn::default();
        let now = Instant::now();
        let a = s.redeem(&s.issue_ticket(now), now).unwrap();
        let b = s.redeem(&s.issue_ticket(now), now).unwrap();
        let pending = s.issue_ticket(now);
        s.close(&a);
        assert!(!s.is_open(&a, now) && s.is_open(&b, now));
        assert_eq!(s.revoke_all(now), 1);
        assert!(!s.is_open(&b, now));
        assert_eq!(s.redeem(&pending, now), None);
    }

    #[test]
    fn the_stores_are_bounded() {
        let s = SignIn::default();
        let now = Instant::now();
        let first = s.issue_ticket(now);
        for i in 0..MAX_TICKETS {
            s.issue_ticket(now + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(s.lock().tickets.len(), MAX_TICKETS);
        assert_eq!(s.redeem(&first, now), None, "the oldest ticket was dropped");
    }
}
