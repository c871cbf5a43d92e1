//! The IP protocol as every part of microseg names it: a rule's port in the custom resource,
//! a DFW log line, a flow read for recommendations or impact. Pure: no IO.
//!
//! The NSX wire spellings of a service entry (`l4_protocol`, `ICMPv4`) live in
//! [`crate::nsx::model`], which converts from this type.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The protocols a rule of a `SegmentationPolicy` can name (the CRD's enum).
const RULE_PROTOCOLS: [&str; 4] = ["TCP", "UDP", "ICMP", "ICMPv6"];

/// An IP protocol. Ordered TCP, UDP, ICMP, ICMPv6, then by number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP for IPv4 (1).
    Icmp,
    /// ICMP for IPv6 (58).
    Icmpv6,
    /// Another protocol by number, written `PROTO <n>`. A DFW log line names ICMPv6 this way
    /// too (`PROTO 58`), and the parser keeps what the line says.
    Other(u8),
    /// A protocol the source does not name (vRNI's `OTHER`).
    Unnamed,
}

impl Protocol {
    /// IANA protocol number; `None` for [`Protocol::Unnamed`].
    pub const fn number(self) -> Option<u8> {
        match self {
            Protocol::Tcp => Some(6),
            Protocol::Udp => Some(17),
            Protocol::Icmp => Some(1),
            Protocol::Icmpv6 => Some(58),
            Protocol::Other(n) => Some(n),
            Protocol::Unnamed => None,
        }
    }

    /// The protocol with this IANA number, named when microseg names it.
    pub const fn from_number(n: u8) -> Protocol {
        match n {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 => Protocol::Icmp,
            58 => Protocol::Icmpv6,
            n => Protocol::Other(n),
        }
    }

    /// Reads `TCP`, `UDP`, `ICMP` (or `ICMPv4`), `ICMPv6` (or `IPv6-ICMP`), `OTHER`,
    /// `PROTO n` or a number, in any case; `None` for anything else.
    pub fn parse(s: &str) -> Option<Protocol> {
        let t = s.trim();
        Some(match t.to_ascii_uppercase().as_str() {
            "TCP" | "6" => Protocol::Tcp,
            "UDP" | "17" => Protocol::Udp,
            "ICMP" | "ICMPV4" | "1" => Protocol::Icmp,
            "ICMPV6" | "IPV6-ICMP" | "58" => Protocol::Icmpv6,
            "OTHER" => Protocol::Unnamed,
            other => Protocol::Other(
                other
                    .trim_start_matches("PROTO")
                    .trim()
                    .parse::<u8>()
                    .ok()?,
            ),
        })
    }

    /// True for TCP and UDP, the protocols with ports.
    pub const fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

impl fmt::Display for Protocol {
    /// `TCP`, `UDP`, `ICMP`, `ICMPv6`, `PROTO <n>` or `OTHER`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("TCP"),
            Protocol::Udp => f.write_str("UDP"),
            Protocol::Icmp => f.write_str("ICMP"),
            Protocol::Icmpv6 => f.write_str("ICMPv6"),
            Protocol::Other(n) => write!(f, "PROTO {n}"),
            Protocol::Unnamed => f.write_str("OTHER"),
        }
    }
}

/// Written as [`fmt::Display`] writes it.
impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read only as a rule's protocol in a custom resource: `TCP`, `UDP`, `ICMP` or `ICMPv6`,
/// exactly so spelled (what the CRD's schema admits).
impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        match s.as_ref() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "ICMP" => Ok(Protocol::Icmp),
            "ICMPv6" => Ok(Protocol::Icmpv6),
            other => Err(serde::de::Error::unknown_variant(other, &RULE_PROTOCOLS)),
        }
    }
}

/// The CRD's schema: the four protocols a rule can match.
impl JsonSchema for Protocol {
    fn schema_name() -> Cow<'static, str> {
        "Protocol".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let one =
            |name: &str, doc: &str| json!({"type": "string", "const": name, "description": doc});
        json_schema!({
            "description": "An IP protocol a rule can match.",
            "oneOf": [
                one("TCP", "TCP."),
                one("UDP", "UDP."),
                one("ICMP", "ICMP for IPv4."),
                one("ICMPv6", "ICMP for IPv6."),
            ],
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One protocol of each kind: every named one, a numbered one and the unnamed.
    pub(crate) const EVERY_KIND: [Protocol; 6] = [
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Icmp,
        Protocol::Icmpv6,
        Protocol::Other(47),
        Protocol::Unnamed,
    ];

    #[test]
    fn display_and_parse_agree_on_every_named_protocol() {
        for p in EVERY_KIND {
            assert_eq!(Protocol::parse(&p.to_string()), Some(p), "{p}");
        }
        assert_eq!(Protocol::parse(" icmpv4 "), Some(Protocol::Icmp));
        assert_eq!(Protocol::parse("58"), Some(Protocol::Icmpv6));
        assert_eq!(Protocol::parse("SCTP"), None);
    }

    #[test]
    fn numbers_round_trip_and_unnamed_has_none() {
        for n in 0..=u8::MAX {
            assert_eq!(Protocol::from_number(n).number(), Some(n));
        }
        assert_eq!(Protocol::from_number(58), Protocol::Icmpv6);
        assert_eq!(Protocol::Unnamed.number(), None);
    }

    #[test]
    fn serde_reads_only_the_rule_protocols_and_writes_their_names() {
        for name in RULE_PROTOCOLS {
            let p: Protocol = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(name));
        }
        let err = serde_json::from_value::<Protocol>(serde_json::json!("tcp")).unwrap_err();
        assert!(err.to_string().contains("unknown variant `tcp`"), "{err}");
        assert!(serde_json::from_value::<Protocol>(serde_json::json!("PROTO 47")).is_err());
    }
}
