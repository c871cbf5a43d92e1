//! The enumerated values of the wire model (a rule's action and direction, a service entry's
//! protocol), spelled as NSX spells them (`reference/nsx-policy-api.md` §2). Each keeps a value
//! it does not know as `Other`, so one odd object read from a real manager decodes (and is a
//! difference) instead of failing the whole listing.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::net::Protocol;

/// An NSX enumeration: the known values, `Other(String)` for the rest, the NSX spelling on
/// the wire and in `Display`, comparison with that spelling.
macro_rules! nsx_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value microseg does not know, kept as read.
            Other(String),
        }

        impl $name {
            /// The value as NSX spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<str>::deserialize(d)?;
                Ok($name::from(s.as_ref()))
            }
        }
    };
}

nsx_enum! {
    /// What a rule does with the traffic it matches (`action`).
    RuleAction {
        /// `ALLOW`.
        Allow = "ALLOW",
        /// `DROP`.
        Drop = "DROP",
        /// `REJECT`.
        Reject = "REJECT",
        /// `JUMP_TO_APPLICATION` (Environment category: go on to the Application category).
        JumpToApplication = "JUMP_TO_APPLICATION",
    }
}

nsx_enum! {
    /// Which traffic of the applied-to VMs a rule sees (`direction`).
    #[derive(Default)]
    RuleDirection {
        /// `IN`.
        In = "IN",
        /// `OUT`.
        Out = "OUT",
        /// `IN_OUT`, NSX's default.
        #[default]
        InOut = "IN_OUT",
    }
}

nsx_enum! {
    /// `l4_protocol` of an `L4PortSetServiceEntry`.
    L4Protocol {
        /// `TCP`.
        Tcp = "TCP",
        /// `UDP`.
        Udp = "UDP",
    }
}

impl L4Protocol {
    /// The wire value of a protocol with ports; `None` for any other.
    pub fn of(p: Protocol) -> Option<L4Protocol> {
        match p {
            Protocol::Tcp => Some(L4Protocol::Tcp),
            Protocol::Udp => Some(L4Protocol::Udp),
            _ => None,
        }
    }

    /// The protocol this value names; `None` for an unknown value.
    pub fn protocol(&self) -> Option<Protocol> {
        match self {
            L4Protocol::Tcp => Some(Protocol::Tcp),
            L4Protocol::Udp => Some(Protocol::Udp),
            L4Protocol::Other(_) => None,
        }
    }
}

nsx_enum! {
    /// `protocol` of an `ICMPTypeServiceEntry`.
    IcmpProtocol {
        /// `ICMPv4`.
        Icmpv4 = "ICMPv4",
        /// `ICMPv6`.
        Icmpv6 = "ICMPv6",
    }
}

impl IcmpProtocol {
    /// The wire value of an ICMP protocol; `None` for any other.
    pub fn of(p: Protocol) -> Option<IcmpProtocol> {
        match p {
            Protocol::Icmp => Some(IcmpProtocol::Icmpv4),
            Protocol::Icmpv6 => Some(IcmpProtocol::Icmpv6),
            _ => None,
        }
    }

    /// The protocol this value names; `None` for an unknown value.
    pub fn protocol(&self) -> Option<Protocol> {
        match self {
            IcmpProtocol::Icmpv4 => Some(Protocol::Icmp),
            IcmpProtocol::Icmpv6 => Some(Protocol::Icmpv6),
            IcmpProtocol::Other(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn known_values_round_trip_in_nsx_spelling() {
        for (text, action) in [
            ("ALLOW", RuleAction::Allow),
            ("DROP", RuleAction::Drop),
            ("REJECT", RuleAction::Reject),
            ("JUMP_TO_APPLICATION", RuleAction::JumpToApplication),
        ] {
            assert_eq!(
                serde_json::from_value::<RuleAction>(json!(text)).unwrap(),
                action
            );
            assert_eq!(serde_json::to_value(&action).unwrap(), json!(text));
            assert_eq!(action, text);
        }
        for (text, direction) in [
            ("IN", RuleDirection::In),
            ("OUT", RuleDirection::Out),
            ("IN_OUT", RuleDirection::InOut),
        ] {
            assert_eq!(RuleDirection::from(text), direction);
            assert_eq!(serde_json::to_value(&direction).unwrap(), json!(text));
        }
        assert_eq!(RuleDirection::default(), "IN_OUT");
    }

    #[test]
    fn an_unknown_value_is_kept_as_read() {
        let odd: RuleAction = serde_json::from_value(json!("DETECT")).unwrap();
        assert_eq!(odd, RuleAction::Other("DETECT".into()));
        assert_eq!(serde_json::to_value(&odd).unwrap(), json!("DETECT"));
        // Case matters to NSX: a lowercase value is not the known one.
        assert_eq!(L4Protocol::from("tcp"), L4Protocol::Other("tcp".into()));
        assert_eq!(L4Protocol::from("tcp").protocol(), None);
    }

    #[test]
    fn service_entry_protocols_map_to_the_crate_protocol() {
        for p in crate::net::tests::EVERY_KIND {
            let l4 = L4Protocol::of(p);
            let icmp = IcmpProtocol::of(p);
            assert_eq!(l4.is_some(), p.has_ports(), "{p}");
            assert_eq!(l4.and_then(|w| w.protocol()), p.has_ports().then_some(p));
            let is_icmp = matches!(p, Protocol::Icmp | Protocol::Icmpv6);
            assert_eq!(icmp.and_then(|w| w.protocol()), is_icmp.then_some(p));
        }
        assert_eq!(IcmpProtocol::of(Protocol::Icmp), Some(IcmpProtocol::Icmpv4));
        assert_eq!(L4Protocol::of(Protocol::Other(6)), None);
    }
}
