//! What the commit phase does with a session, decided once for every store.
//!
//! The cookie store and the server stores differ in *how* they write (a new
//! seal, or a store update) but not in *whether*: that is this one pure
//! function, with its table of cases below.

/// What a request's session looked like when its response came back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The backend sent an update or asked for a new id.
    pub modified: bool,
    /// No stored session matched the cookie: this one started now.
    pub is_new: bool,
    /// The client sent a session cookie (valid or not).
    pub cookie_present: bool,
    /// `session.save_uninitialized`: store new sessions even when empty.
    pub save_uninitialized: bool,
    /// `session.rolling`: re-send the cookie on every response.
    pub rolling: bool,
    /// The expiry would move by at least `touch_interval`.
    pub needs_touch: bool,
}

/// The commit phase's one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Write the session (a store update, or a new seal) and set the cookie.
    Write,
    /// Move the expiry only (a store touch, or a re-seal with the new
    /// expiry) and set the cookie.
    Touch,
    /// Set the cookie again, session and expiry unchanged.
    Resend,
    /// Nothing to keep: expire the cookie the client sent, which did not
    /// open a session.
    Clear,
    /// Leave everything as it is.
    Nothing,
}

/// Decides what to do; see the table in the tests.
pub fn decide(facts: Facts) -> Outcome {
    if facts.modified {
        return Outcome::Write;
    }
    if facts.is_new {
        return if facts.save_uninitialized {
            Outcome::Write
        } else if facts.cookie_present {
            Outcome::Clear
        } else {
            Outcome::Nothing
        };
    }
    if facts.needs_touch {
        Outcome::Touch
    } else if facts.rolling {
        Outcome::Resend
    } else {
        Outcome::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    /// modified, new, cookie sent, save_uninitialized, rolling, needs touch
    /// → outcome.
    const TABLE: &[(bool, bool, bool, bool, bool, bool, Outcome)] = &[
        // The backend changed the session: always written.
        (true, false, true, false, false, false, Write),
        (true, true, false, false, false, false, Write),
        (true, true, true, false, true, true, Write),
        // A new, untouched session is stored only with save_uninitialized.
        (false, true, false, false, false, false, Nothing),
        (false, true, false, true, false, false, Write),
        (false, true, false, false, true, false, Nothing),
        // A cookie that did not open a session is cleared.
        (false, true, true, false, false, false, Clear),
        (false, true, true, false, true, false, Clear),
        (false, true, true, true, false, false, Write),
        // An existing, unmodified session: touch when due, else resend
        // when rolling, else nothing.
        (false, false, true, false, false, false, Nothing),
        (false, false, true, false, false, true, Touch),
        (false, false, true, false, true, true, Touch),
        (false, false, true, false, true, false, Resend),
        (false, false, true, true, false, false, Nothing),
    ];

    #[test]
    fn every_case_of_the_table() {
        for &(
            modified,
            is_new,
            cookie_present,
            save_uninitialized,
            rolling,
            needs_touch,
            expected,
        ) in TABLE
        {
            let facts = Facts {
                modified,
                is_new,
                cookie_present,
                save_uninitialized,
                rolling,
                needs_touch,
            };
            assert_eq!(decide(facts), expected, "{facts:?}");
        }
    }
}
