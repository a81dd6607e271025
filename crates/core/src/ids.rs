//! Identifiers.
//!
//! Sites and cameras are named by operators in the config (`site-01`, `cam-017`):
//! short, stable slugs that appear in URLs and metrics labels. Events get a UUIDv7
//! made by the node, so a replayed batch can be recognised (`ON CONFLICT`).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! slug_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_owned())
            }
        }
    };
}

slug_id!(
    /// A camera's id from the config, e.g. `cam-017`.
    CameraId
);
slug_id!(
    /// A site's id from the config, e.g. `site-05`.
    SiteId
);

/// An event's id: a UUIDv7 made where the event is born, so ids sort by time and a
/// replay of the same event is recognised by the database.
pub type EventId = uuid::Uuid;

/// A new, time-ordered event id.
pub fn new_event_id() -> EventId {
    uuid::Uuid::now_v7()
}

/// True if `s` is a valid slug id: 1-64 chars of `a-z`, `0-9`, `-`, `_`, starting
/// with a letter or digit.
pub fn is_valid_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_valid_slug("cam-01"));
        assert!(is_valid_slug("9_a"));
        assert!(!is_valid_slug(""));
        assert!(!is_valid_slug("-cam"));
        assert!(!is_valid_slug("Cam"));
        assert!(!is_valid_slug("cam 1"));
    }

    #[test]
    fn event_ids_sort_by_time() {
        let a = new_event_id();
        let b = new_event_id();
        assert!(a < b);
        assert_eq!(a.get_version_num(), 7);
    }
}
