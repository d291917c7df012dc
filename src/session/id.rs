//! The ids of sessions and participant seats as distinct types, so that one cannot be passed
//! where the other is expected. On the wire and on disk each is its plain string
//! (`#[serde(transparent)]`); a map keyed by one can be looked up with a client's raw `&str`
//! (`Borrow<str>`).

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Defines a string id newtype with the conversions and comparisons every id needs.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as the client or the file spelled it.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether the id is empty (a session or seat not yet given one).
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        /// As the string (`"ae839e5e6f"`), so that messages quoting an id read as before.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&$name> for $name {
            fn eq(&self, other: &&$name) -> bool {
                self == *other
            }
        }

        impl PartialEq<$name> for &$name {
            fn eq(&self, other: &$name) -> bool {
                *self == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_id! {
    /// A session's id (`Session::id`; SynthARium's 10 hex digits, or whatever a stored file says).
    SessionId
}

string_id! {
    /// A participant seat's id (`Participant::id`). A credential: see `session::Viewer`.
    ParticipantId
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ids_are_their_strings_on_the_wire() {
        let id: SessionId = serde_json::from_str(r#""ae839e5e6f""#).unwrap();
        assert_eq!(id, "ae839e5e6f");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""ae839e5e6f""#);
        assert_eq!(id.to_string(), "ae839e5e6f");
        assert_eq!(format!("{id:?}"), r#""ae839e5e6f""#, "quoted in messages as the string was");
        assert!(serde_json::from_str::<ParticipantId>("5").is_err());
    }

    #[test]
    fn maps_are_looked_up_by_raw_strings() {
        let mut m = HashMap::new();
        m.insert(ParticipantId::from("9ba5fdccde"), 1);
        assert_eq!(m.get("9ba5fdccde"), Some(&1));
        assert_eq!(m.get("nope"), None);
    }
}
