//! NSX's predefined services that microseg's examples name, as a fresh manager holds them
//! (`/infra/services/{id}`, each with one L4 port-set entry). The simulator seeds them; the
//! impact evaluation reads rules that name them. A real manager holds more. Pure: no IO.

use super::model::L4Protocol;

/// One predefined service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Id, the last segment of `/infra/services/{id}`.
    pub id: &'static str,
    /// The protocol of its one entry.
    pub protocol: L4Protocol,
    /// Its destination ports.
    pub ports: &'static [&'static str],
}

const fn service(
    id: &'static str,
    protocol: L4Protocol,
    ports: &'static [&'static str],
) -> Service {
    Service {
        id,
        protocol,
        ports,
    }
}

/// The predefined L4 services, by id.
pub const SERVICES: &[Service] = &[
    service("HTTP", L4Protocol::Tcp, &["80"]),
    service("HTTPS", L4Protocol::Tcp, &["443"]),
    service("SSH", L4Protocol::Tcp, &["22"]),
    service("RDP", L4Protocol::Tcp, &["3389"]),
    service("DNS", L4Protocol::Tcp, &["53"]),
    service("DNS-UDP", L4Protocol::Udp, &["53"]),
    service("NTP", L4Protocol::Udp, &["123"]),
    service("LDAP", L4Protocol::Tcp, &["389"]),
    service("MySQL", L4Protocol::Tcp, &["3306"]),
    service("DHCP-Server", L4Protocol::Udp, &["67"]),
    service("DHCP-Client", L4Protocol::Udp, &["68"]),
];

/// The predefined service with this id.
pub fn service_by_id(id: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.id == id)
}
