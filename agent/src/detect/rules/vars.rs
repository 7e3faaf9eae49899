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

    /// Applies `overrides` (from the configuration or `--var`) on top of these variables and
    /// checks that each one parses; an error names the variable.
    pub fn with_overrides<'a>(
        mut self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vars, (String, String)> {
        let overrides: Vec<(&str, &str)> = overrides.into_iter().collect();
        for (name, value) in &overrides {
            self.set(name, value);
        }
        for (name, _) in &overrides {
            let name = name.trim_start_matches('$');
            let reference = format!("${name}");
            let checked = if self.port(name).is_some() {
                super::PortSet::parse(&reference, &self).map(|_| ())
            } else {
                super::AddrSet::parse(&reference, &self).map(|_| ())
            };
            checked.map_err(|message| (name.to_owned(), message))?;
        }
        Ok(self)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked_and_named() {
        let vars = Vars::default()
            .with_overrides([("HOME_NET", "[10.1.0.0/16]"), ("SSH_PORTS", "[22,2222]")])
            .unwrap();
        assert_eq!(vars.address("HOME_NET"), Some("[10.1.0.0/16]"));
        assert_eq!(vars.port("SSH_PORTS"), Some("[22,2222]"));
        let err = Vars::default()
            .with_overrides([("HOME_NET", "10.0.0.0/33")])
            .unwrap_err();
        assert_eq!(err.0, "HOME_NET");
        let err = Vars::default()
            .with_overrides([("WEB_PORTS", "[80,")])
            .unwrap_err();
        assert_eq!(err.0, "WEB_PORTS");
    }
}
