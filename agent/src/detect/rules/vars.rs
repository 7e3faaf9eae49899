//! Rule variables (`$HOME_NET`, `$HTTP_PORTS`, ...): the address and port groups of
//! Suricata's default `suricata.yaml`, which the agent configuration and `swarmd replay
//! --var` can override or extend.

use std::collections::BTreeMap;

/// Suricata's default address groups, as its shipped `suricata.yaml` defines them.
const DEFAULT_ADDRESS_GROUPS: &[(&str, &str)] = &[
    ("HOME_NET", "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]"),
    ("EXTERNAL_NET", "!$HOME_NET"),
    ("HTTP_SERVERS", "$HOME_NET"),
    ("SMTP_SERVERS", "$HOME_NET"),
    ("SQL_SERVERS", "$HOME_NET"),
    ("DNS_SERVERS", "$HOME_NET"),
    ("TELNET_SERVERS", "$HOME_NET"),
    ("AIM_SERVERS", "$EXTERNAL_NET"),
    ("DC_SERVERS", "$HOME_NET"),
    ("DNP3_SERVER", "$HOME_NET"),
    ("DNP3_CLIENT", "$HOME_NET"),
    ("MODBUS_CLIENT", "$HOME_NET"),
    ("MODBUS_SERVER", "$HOME_NET"),
    ("ENIP_CLIENT", "$HOME_NET"),
    ("ENIP_SERVER", "$HOME_NET"),
];

/// Suricata's default port groups.
const DEFAULT_PORT_GROUPS: &[(&str, &str)] = &[
    ("HTTP_PORTS", "80"),
    ("SHELLCODE_PORTS", "!80"),
    ("ORACLE_PORTS", "1521"),
    ("SSH_PORTS", "22"),
    ("DNP3_PORTS", "20000"),
    ("MODBUS_PORTS", "502"),
    ("FILE_DATA_PORTS", "[$HTTP_PORTS,110,143]"),
    ("FTP_PORTS", "21"),
    ("GENEVE_PORTS", "6081"),
    ("VXLAN_PORTS", "4789"),
    ("TEREDO_PORTS", "3544"),
];

/// The variables rules may reference, by name without the `$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    addresses: BTreeMap<String, String>,
    ports: BTreeMap<String, String>,
}

impl Default for Vars {
    fn default() -> Self {
        let own = |groups: &[(&str, &str)]| {
            groups
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        };
        Vars {
            addresses: own(DEFAULT_ADDRESS_GROUPS),
            ports: own(DEFAULT_PORT_GROUPS),
        }
    }
}

impl Vars {
    /// Sets a variable. A name that is already a port group, or that ends in `_PORTS`, is a
    /// port group; anything else is an address group.
    pub fn set(&mut self, name: &str, value: &str) {
        let name = name.trim_start_matches('$').to_owned();
        if self.ports.contains_key(&name) || name.ends_with("_PORTS") {
            self.ports.insert(name, value.to_owned());
        } else {
            self.addresses.insert(name, value.to_owned());
        }
    }

    /// Sets an address group.
    pub fn set_address(&mut self, name: &str, value: &str) {
        self.addresses
            .insert(name.trim_start_matches('$').to_owned(), value.to_owned());
    }

    /// Sets a port group.
    pub fn set_port(&mut self, name: &str, value: &str) {
        self.ports
            .insert(name.trim_start_matches('$').to_owned(), value.to_owned());
    }

    pub fn address(&self, name: &str) -> Option<&str> {
        self.addresses.get(name).map(String::as_str)
    }

    pub fn port(&self, name: &str) -> Option<&str> {
        self.ports.get(name).map(String::as_str)
    }
}
